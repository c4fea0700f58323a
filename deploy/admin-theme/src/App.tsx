import { AdminClientProvider, AppContexts, Header, PageBreadCrumbs } from "@keycloak/keycloak-admin-ui";
import { KeycloakSpinner, mainPageContentId } from "@keycloak/keycloak-ui-shared";
import { Page } from "@patternfly/react-core";
import { Suspense } from "react";
import { Outlet } from "react-router-dom";
import { CommunitiesAccessProvider } from "./access";
import { AlertsProvider } from "./alerts";
import { AuthWall } from "./AuthWall";
import { ErrorBoundary } from "./ErrorBoundary";
import { PageNav } from "./PageNav";

/**
 * Keycloak's console (its App in js/apps/admin-ui/src/App.tsx, made of the
 * same exported parts) with these differences: the left bar is this theme's
 * (PageNav.tsx, which adds Communities), and the communities service is
 * asked once what the caller may do with communities. Contexts (environment,
 * admin client, realm, access) come from @keycloak/keycloak-admin-ui itself:
 * it bundles its own copy of @keycloak/keycloak-ui-shared, whose contexts
 * another copy cannot see.
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
          <ErrorBoundary>
            <Suspense fallback={<KeycloakSpinner />}>
              <AuthWall>
                <AlertsProvider>
                  <Outlet />
                </AlertsProvider>
              </AuthWall>
            </Suspense>
          </ErrorBoundary>
        </Page>
      </CommunitiesAccessProvider>
    </AppContexts>
  </AdminClientProvider>
);
