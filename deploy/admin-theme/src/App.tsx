import {
  AdminClientProvider,
  AppContexts,
  ErrorRenderer,
  Header,
  PageBreadCrumbs,
} from "@keycloak/keycloak-admin-ui";
import {
  ErrorBoundaryFallback,
  KeycloakSpinner,
  mainPageContentId,
} from "@keycloak/keycloak-ui-shared";
import { Page } from "@patternfly/react-core";
import { Suspense } from "react";
import { Outlet } from "react-router-dom";
import { CommunitiesAccessProvider } from "./access";
import { AuthWall } from "./AuthWall";
import { PageNav } from "./PageNav";

/**
 * Keycloak's console (its App in js/apps/admin-ui/src/App.tsx, made of the
 * same exported parts) with two differences: the left bar is this theme's
 * (PageNav.tsx, which adds Communities), and the communities service is
 * asked once what the caller may do with communities.
 */
export const ConsoleApp = () => (
  <AdminClientProvider>
    <AppContexts>
      <CommunitiesAccessProvider>
        <Page
          header={<Header />}
          isManagedSidebar
          sidebar={<PageNav />}
          breadcrumb={<PageBreadCrumbs />}
          mainContainerId={mainPageContentId}
        >
          <ErrorBoundaryFallback fallback={ErrorRenderer}>
            <Suspense fallback={<KeycloakSpinner />}>
              <AuthWall>
                <Outlet />
              </AuthWall>
            </Suspense>
          </ErrorBoundaryFallback>
        </Page>
      </CommunitiesAccessProvider>
    </AppContexts>
  </AdminClientProvider>
);
