import type Keycloak from "keycloak-js";

/** What the communities service says the caller may do in the realm. */
export type Access = {
  realm: string;
  username: string;
  communityCreator: boolean;
  serviceDesk: boolean;
  canCreate: boolean;
  /** The console's client may change, not only read (--change-clients). */
  canChange: boolean;
  console: boolean;
  owned: string[];
  memberships: Record<string, string[]>;
};

export type Community = { securityLabel: string; communityName: string };

/** A disabled member keeps the membership but cannot sign in, and is no owner. */
export type Member = { id: string; username: string; enabled: boolean };

export type Members = Record<string, Member[]>;

/**
 * A refusal or failure of the service, with its problem detail and, when
 * the service answered, the request id service desk finds it by in the log.
 */
export class ServiceError extends Error {
  constructor(
    readonly status: number,
    readonly detail: string,
    /** Seconds the service asked to wait before trying again, if it did. */
    readonly retryAfter?: number,
  ) {
    super(detail);
  }

  /** Trying again may succeed: the service was unreachable, or said so. */
  get transient() {
    return this.status === 0 || this.status === 502 || this.status === 503 || this.status === 504;
  }
}

/**
 * Calls the communities service with the console's own access token
 * (refreshed when about to expire), as the console calls Keycloak's admin
 * API with it. A 401 (the token expired or was revoked under the page) is
 * sent once more with a token just refreshed, and so is a read's 403 (the
 * token may predate a role the service asks for): without that, a page
 * refused once stayed refused until it was reloaded. A change refused with
 * 403 is not sent again.
 */
export const serviceClient = (keycloak: Keycloak, baseUrl: string, realm: string) => {
  const root = `${baseUrl}/realms/${encodeURIComponent(realm)}`;

  const send = async (method: string, path: string, body: unknown, refresh: boolean): Promise<Response> => {
    try {
      // -1 refreshes whatever the token's age.
      await keycloak.updateToken(refresh ? -1 : 5);
    } catch {
      await keycloak.login();
    }
    const headers: Record<string, string> = {
      Authorization: `Bearer ${keycloak.token}`,
      Accept: "application/json, application/problem+json",
    };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    try {
      return await fetch(root + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (e) {
      throw new ServiceError(0, `the communities service cannot be reached (${String(e)})`);
    }
  };

  const call = async <T>(method: string, path: string, body?: unknown): Promise<T> => {
    let res = await send(method, path, body, false);
    if (res.status === 401 || (res.status === 403 && method === "GET")) {
      res = await send(method, path, body, true);
    }
    if (!res.ok) {
      let detail = `HTTP ${res.status}`;
      let requestId = res.headers.get("X-Request-ID");
      try {
        const problem = await res.json();
        detail = problem.detail || problem.title || detail;
        requestId = problem.requestId || requestId;
      } catch {
        // not problem+json: keep the status
      }
      // Details of failures ask the user to quote it.
      const wait = Number(res.headers.get("Retry-After"));
      throw new ServiceError(
        res.status,
        requestId ? `${detail} (request id ${requestId})` : detail,
        Number.isFinite(wait) && wait > 0 ? wait : undefined,
      );
    }
    return (res.status === 204 ? undefined : await res.json()) as T;
  };

  const seg = encodeURIComponent;
  return {
    access: () => call<Access>("GET", "/communities-authz/access"),
    list: (first: number, max: number, search = "", mine = false) =>
      call<Community[]>(
        "GET",
        `/communities?first=${first}&max=${max}` +
          (search ? `&search=${encodeURIComponent(search)}` : "") +
          (mine ? "&mine=true" : ""),
      ),
    create: (c: Community) => call<Community>("POST", "/communities", c),
    get: (label: string) => call<Community>("GET", `/communities/${seg(label)}`),
    // Seed 000's DELETE: the community exactly as listed.
    remove: (c: Community) => call<void>("DELETE", "/communities", c),
    // A page of each role's members, or of one role's (the service reads
    // a bounded page: a default community's consumers may be every user).
    members: (label: string, page: { role?: string; first?: number; max: number }) =>
      call<Members>(
        "GET",
        `/communities/${seg(label)}/members?max=${page.max}` +
          (page.first ? `&first=${page.first}` : "") +
          (page.role ? `&role=${seg(page.role)}` : ""),
      ),
    addMember: (label: string, role: string, userId: string) =>
      call<void>("PUT", `/communities/${seg(label)}/${seg(role)}/${seg(userId)}`),
    removeMember: (label: string, role: string, userId: string) =>
      call<void>("DELETE", `/communities/${seg(label)}/${seg(role)}/${seg(userId)}`),
  };
};

export type ServiceClient = ReturnType<typeof serviceClient>;
