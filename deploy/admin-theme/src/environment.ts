import type { AdminEnvironment } from "@keycloak/keycloak-admin-ui";
import { getInjectedEnvironment } from "@keycloak/keycloak-ui-shared";

/**
 * What Keycloak writes into the console's page (theme/communities/admin/index.ftl),
 * plus where the communities service is.
 */
export type Environment = AdminEnvironment & {
  /**
   * Base URL of the communities service, from the theme property
   * communitiesUrl. Empty means the service answers on Keycloak's own host
   * (the front door), so the page needs no CORS.
   */
  communitiesUrl?: string;
};

export const environment = getInjectedEnvironment<Environment>();

/** Where the page sends its calls to the communities service. */
export const serviceBaseUrl = (env: Environment) =>
  (env.communitiesUrl || env.serverBaseUrl).replace(/\/+$/, "");
