import {
  routes,
  useAccess,
  useEnvironment,
  useRealm,
  useServerInfo,
  type AdminEnvironment,
} from "@keycloak/keycloak-admin-ui";
import { label } from "@keycloak/keycloak-ui-shared";
import { Label, Nav, NavGroup, PageSidebar, PageSidebarBody } from "@patternfly/react-core";
import { useTranslation } from "react-i18next";
import { generatePath, NavLink } from "react-router-dom";
import { useCommunitiesAccess } from "./access";
import { toCommunities } from "./routes";

// Keycloak's left bar (js/apps/admin-ui/src/PageNav.tsx, 26.7.3) rebuilt
// from its exported parts, because Keycloak offers no way to add an entry
// to it; plus one entry: Communities.

type LeftNavProps = { title: string; path: string; id?: string };

const linkClass = ({ isActive }: { isActive: boolean }) =>
  `pf-v5-c-nav__link${isActive ? " pf-m-current" : ""}`;

const LeftNav = ({ title, path, id }: LeftNavProps) => {
  const { t } = useTranslation();
  const { hasAccess } = useAccess();
  const { realm } = useRealm();
  const route = routes.find(
    (r) => r.path.replace(/\/:.+?(\?|(?:(?!\/).)*|$)/g, "") === (id || path),
  );
  const allowed =
    route &&
    (Array.isArray(route.handle.access)
      ? hasAccess(...route.handle.access)
      : hasAccess(route.handle.access));
  if (!allowed) {
    return null;
  }
  const name = "nav-item" + path.replace("/", "-");
  return (
    <li>
      <NavLink id={name} data-testid={name} to={`/${encodeURIComponent(realm)}${path}`} className={linkClass}>
        {t(title)}
      </NavLink>
    </li>
  );
};

/** Shown when the communities service says the caller may use the page. */
const CommunitiesNav = () => {
  const { t } = useTranslation();
  const { realm } = useRealm();
  const { environment } = useEnvironment<AdminEnvironment>();
  const { access, error } = useCommunitiesAccess();
  // The console's token is of the realm the user logged in to: the service
  // answers only for that realm. Without an answer the entry is there when
  // the service failed, so that its page can say why.
  if (!(access ? access.console : error) || realm !== environment.realm) {
    return null;
  }
  return (
    <NavGroup aria-label={t("communities")}>
      <li>
        <NavLink
          id="nav-item-communities"
          data-testid="nav-item-communities"
          to={toCommunities(realm)}
          className={linkClass}
        >
          {t("communities")}
        </NavLink>
      </li>
    </NavGroup>
  );
};

export const PageNav = () => {
  const { t } = useTranslation();
  const { environment } = useEnvironment<AdminEnvironment>();
  const { hasSomeAccess, hasAccess } = useAccess();
  const { features, componentTypes } = useServerInfo();
  const { realm, realmRepresentation } = useRealm();

  const isFeatureEnabled = (name: string) =>
    !!features?.some((f) => f.enabled && f.name === name) &&
    (name !== "ORGANIZATION" ||
      hasAccess(({ hasAny }) => hasAny("manage-realm", "query-organizations")));
  const pages = componentTypes?.["org.keycloak.services.ui.extend.UiPageProvider"];

  const showManage = hasSomeAccess(
    "view-realm",
    "query-groups",
    "query-users",
    "query-clients",
    "query-organizations",
    "view-events",
  );
  const showConfigure = hasSomeAccess("view-realm", "query-clients", "view-identity-providers");
  const showWorkflows = hasSomeAccess("realm-admin", "admin") && isFeatureEnabled("WORKFLOWS");

  return (
    <PageSidebar className="keycloak__page_nav__nav">
      <PageSidebarBody>
        <Nav>
          <h2 className="pf-v5-c-nav__section-title" style={{ wordWrap: "break-word" }}>
            <span data-testid="currentRealm">
              {label(t, realmRepresentation.displayName, realm)}
            </span>{" "}
            <Label color="blue">{t("currentRealm")}</Label>
          </h2>
          {environment.masterRealm === environment.realm && (
            <NavGroup>
              <LeftNav title={t("manageRealms")} path="/realms" />
            </NavGroup>
          )}
          <CommunitiesNav />
          {showManage && (
            <NavGroup aria-label={t("manage")} title={t("manage")}>
              {isFeatureEnabled("ORGANIZATION") && realmRepresentation.organizationsEnabled && (
                <LeftNav title="organizations" path="/organizations" />
              )}
              <LeftNav title="clients" path="/clients" />
              <LeftNav title="clientScopes" path="/client-scopes" />
              <LeftNav title="realmRoles" path="/roles" />
              <LeftNav title="users" path="/users" />
              <LeftNav title="groups" path="/groups" />
              <LeftNav title="sessions" path="/sessions" />
              <LeftNav title="events" path="/events" />
            </NavGroup>
          )}
          {showConfigure && (
            <NavGroup aria-label={t("configure")} title={t("configure")}>
              <LeftNav title="realmSettings" path="/realm-settings" />
              <LeftNav title="authentication" path="/authentication" />
              {isFeatureEnabled("ADMIN_FINE_GRAINED_AUTHZ_V2") &&
                realmRepresentation.adminPermissionsEnabled && (
                  <LeftNav title="permissions" path="/permissions" />
                )}
              <LeftNav title="identityProviders" path="/identity-providers" />
              <LeftNav title="userFederation" path="/user-federation" />
              {showWorkflows && <LeftNav title="workflows" path="/workflows" />}
              {isFeatureEnabled("DECLARATIVE_UI") &&
                pages?.map((p) => (
                  <LeftNav
                    key={p.id}
                    title={p.id}
                    path={generatePath("/page-section/:providerId", { providerId: p.id })}
                    id="/page-section"
                  />
                ))}
            </NavGroup>
          )}
        </Nav>
      </PageSidebarBody>
    </PageSidebar>
  );
};
