import { useEnvironment } from "@keycloak/keycloak-admin-ui";
import { createContext, PropsWithChildren, useContext, useEffect, useMemo, useState } from "react";
import { serviceBaseUrl, type Environment } from "./environment";
import { ServiceError, serviceClient, type Access, type ServiceClient } from "./service";

/** Longest wait between two tries of an access call that failed for now. */
const MAX_RETRY_SECONDS = 60;

type AccessState = {
  client: ServiceClient;
  /** undefined while the service has not answered. */
  access?: Access;
  /** Why the service has not answered; shown while it is tried again if it may yet. */
  error?: string;
  /** Records a change this page made, without asking the service again. */
  update: (change: (a: Access) => Access) => void;
};

const AccessContext = createContext<AccessState | undefined>(undefined);

/**
 * Asks the communities service once per console load what the caller may
 * do (GET .../communities-authz/access), and again, waiting longer each
 * time (at least its Retry-After, at most a minute), while it cannot be
 * reached or answers "try again": a service starting up or briefly down
 * must not hide Communities for the rest of the session. The nav entry and
 * the pages follow its answer; nothing is guessed from the token. Every
 * call the pages make is checked by the service again.
 */
export const CommunitiesAccessProvider = ({ children }: PropsWithChildren) => {
  const { keycloak, environment } = useEnvironment<Environment>();
  const client = useMemo(
    () => serviceClient(keycloak, serviceBaseUrl(environment), environment.realm),
    [keycloak, environment],
  );
  const [access, setAccess] = useState<Access>();
  const [error, setError] = useState<string>();

  useEffect(() => {
    let live = true;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const ask = (wait: number) => {
      client
        .access()
        .then((a) => {
          if (!live) return;
          setAccess(a);
          setError(undefined);
        })
        .catch((e: Error) => {
          if (!live) return;
          setError(e.message);
          if (e instanceof ServiceError && e.transient) {
            const next = Math.min(Math.max(wait, e.retryAfter ?? 0), MAX_RETRY_SECONDS);
            timer = setTimeout(() => ask(Math.min(wait * 2, MAX_RETRY_SECONDS)), next * 1000);
          }
        });
    };
    ask(2);
    return () => {
      live = false;
      clearTimeout(timer);
    };
  }, [client]);

  const value = useMemo<AccessState>(
    () => ({ client, access, error, update: (change) => setAccess((a) => (a ? change(a) : a)) }),
    [client, access, error],
  );
  return <AccessContext.Provider value={value}>{children}</AccessContext.Provider>;
};

export const useCommunitiesAccess = () => {
  const ctx = useContext(AccessContext);
  if (!ctx) throw new Error("useCommunitiesAccess outside CommunitiesAccessProvider");
  return ctx;
};

export const isOwner = (a: Access, label: string) => a.owned.includes(label);

/** May see the members of label: service desk or its owners (as the service decides). */
export const mayManage = (a: Access, label: string) => a.serviceDesk || isOwner(a, label);

/** May add and remove members of label. */
export const mayChangeMembers = (a: Access, label: string) => a.canChange && mayManage(a, label);

/** May delete label: service desk, or a community creator who owns it. */
export const mayDelete = (a: Access, label: string) =>
  a.canChange && (a.serviceDesk || (a.communityCreator && isOwner(a, label)));
