import { useEnvironment } from "@keycloak/keycloak-admin-ui";
import { createContext, PropsWithChildren, useCallback, useContext, useEffect, useMemo, useRef, useState } from "react";
import { serviceBaseUrl, type Environment } from "./environment";
import { ServiceError, serviceClient, type Access, type ServiceClient } from "./service";

/** Longest wait between two tries of an access call that failed for now. */
const MAX_RETRY_SECONDS = 60;

/** How old an answer may be when a Communities page opens before it is asked again. */
const FRESH_MS = 60_000;

type AccessState = {
  client: ServiceClient;
  /** undefined while the service has not answered. */
  access?: Access;
  /** Why the service has not answered; shown while it is tried again if it may yet. */
  error?: string;
  /** Records a change this page made, without asking the service again. */
  update: (change: (a: Access) => Access) => void;
  /** Asks the service again if its answer is over a minute old (a page opens). */
  refresh: () => void;
};

const AccessContext = createContext<AccessState | undefined>(undefined);

/**
 * Asks the communities service what the caller may do (GET
 * .../communities-authz/access) when the console loads, and again when a
 * Communities page opens over a minute after the last answer: roles and
 * ownerships change under a console left open. While the service cannot be
 * reached or answers "try again" it is asked again, waiting longer each
 * time (at least its Retry-After, at most a minute): a service starting up
 * or briefly down must not hide Communities for the rest of the session.
 * The nav entry and the pages follow its answer; nothing is guessed from
 * the token. Every call the pages make is checked by the service again.
 */
export const CommunitiesAccessProvider = ({ children }: PropsWithChildren) => {
  const { keycloak, environment } = useEnvironment<Environment>();
  const client = useMemo(
    () => serviceClient(keycloak, serviceBaseUrl(environment), environment.realm),
    [keycloak, environment],
  );
  const [access, setAccess] = useState<Access>();
  const [error, setError] = useState<string>();
  const [asks, setAsks] = useState(0);
  const answeredAt = useRef(0);

  useEffect(() => {
    let live = true;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const ask = (wait: number) => {
      client
        .access()
        .then((a) => {
          if (!live) return;
          answeredAt.current = Date.now();
          setAccess(a);
          setError(undefined);
        })
        .catch((e: Error) => {
          if (!live) return;
          // A page already drawn keeps its last answer: the service checks
          // each call it makes anyway.
          if (!answeredAt.current) setError(e.message);
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
  }, [client, asks]);

  const refresh = useCallback(() => {
    if (answeredAt.current && Date.now() - answeredAt.current > FRESH_MS) {
      answeredAt.current = Date.now();
      setAsks((n) => n + 1);
    }
  }, []);

  const value = useMemo<AccessState>(
    () => ({ client, access, error, refresh, update: (change) => setAccess((a) => (a ? change(a) : a)) }),
    [client, access, error, refresh],
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
