import { routes } from "@keycloak/keycloak-admin-ui";
import { lazy } from "react";
import { generatePath } from "react-router-dom";

/** The shape of Keycloak's console routes (its AppRouteObject is not exported). */
type AppRouteObject = (typeof routes)[number];

const CommunitiesSection = lazy(() => import("./communities/CommunitiesSection"));
const CommunityDetails = lazy(() => import("./communities/CommunityDetails"));

// "anyone": Keycloak's access model knows nothing of communities. The pages
// themselves show nothing until the communities service has said what the
// caller may do (access.tsx).
export const CommunitiesRoute: AppRouteObject = {
  path: "/:realm/communities",
  element: <CommunitiesSection />,
  handle: { access: "anyone", breadcrumb: (t) => t("communities") },
};

export const CommunityRoute: AppRouteObject = {
  path: "/:realm/communities/:label",
  element: <CommunityDetails />,
  handle: { access: "anyone", breadcrumb: (t) => t("communityDetails") },
};

/** Keycloak's own routes and the two Communities pages. */
export const consoleRoutes: AppRouteObject[] = [...routes, CommunitiesRoute, CommunityRoute];

export const toCommunities = (realm: string) => generatePath(CommunitiesRoute.path, { realm });

export const toCommunity = (realm: string, label: string) =>
  generatePath(CommunityRoute.path, { realm, label });
