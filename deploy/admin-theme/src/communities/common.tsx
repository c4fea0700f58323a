import { KeycloakSpinner } from "@keycloak/keycloak-ui-shared";
import { Alert, EmptyState, EmptyStateBody, EmptyStateHeader, PageSection } from "@patternfly/react-core";
import { useEffect, type ReactNode } from "react";
import { useTranslation } from "react-i18next";
import { useCommunitiesAccess } from "../access";
import type { Access } from "../service";

/**
 * Renders children only once the service has said the caller may use the
 * Communities pages; otherwise an explanation, and no data and no form.
 */
export const WithAccess = ({ children }: { children: (a: Access) => ReactNode }) => {
  const { t } = useTranslation();
  const { access, error, refresh } = useCommunitiesAccess();
  useEffect(refresh, [refresh]);
  if (error) {
    return (
      <PageSection>
        <Alert variant="danger" isInline title={t("communitiesUnavailable")} data-testid="communities-error">
          {error}
        </Alert>
      </PageSection>
    );
  }
  if (!access) {
    return <KeycloakSpinner />;
  }
  if (!access.console) {
    return (
      <PageSection>
        <EmptyState data-testid="communities-no-access">
          <EmptyStateHeader titleText={t("communitiesNoAccess")} headingLevel="h1" />
          <EmptyStateBody>{t("communitiesNoAccessHelp")}</EmptyStateBody>
        </EmptyState>
      </PageSection>
    );
  }
  return <>{children(access)}</>;
};

/** The caller's own roles in a community, for display. */
export const rolesText = (a: Access, label: string, none: string) =>
  (a.memberships[label] ?? []).join(", ") || none;
