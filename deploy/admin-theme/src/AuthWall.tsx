import type { AccessType } from "@keycloak/keycloak-admin-client/lib/defs/whoAmIRepresentation";
import { ForbiddenSection, useAccess } from "@keycloak/keycloak-admin-ui";
import type { PropsWithChildren } from "react";
import { useMatches } from "react-router-dom";

/**
 * Keycloak's own check (js/apps/admin-ui/src/root/AuthWall.tsx, not
 * exported): a route shows only to callers with the realm-management roles
 * its handle names.
 */
export const AuthWall = ({ children }: PropsWithChildren) => {
  const { hasAccess } = useAccess();
  const needed = useMatches().flatMap(({ handle }) => {
    if (typeof handle !== "object" || handle === null || !("access" in handle)) {
      return [];
    }
    const access = (handle as { access: AccessType | AccessType[] }).access;
    return Array.isArray(access) ? access : [access];
  });
  if (!hasAccess(...needed)) {
    return <ForbiddenSection permissionNeeded={needed} />;
  }
  return <>{children}</>;
};
