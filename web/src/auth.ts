// The token for the front door: taken from a `#token=…` link (what `make run` prints), kept in
// sessionStorage for this browser session, and sent on every call as `authorization: Bearer`.
// A call answered UNAUTHENTICATED asks the page to show the sign-in view.
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";

const KEY = "satlas.token";
export const SIGN_IN_EVENT = "satlas:sign-in";

export function getToken(storage: Storage = window.sessionStorage): string | null {
  return storage.getItem(KEY);
}

export function setToken(token: string, storage: Storage = window.sessionStorage): void {
  storage.setItem(KEY, token.trim());
}

export function signOut(storage: Storage = window.sessionStorage): void {
  storage.removeItem(KEY);
  window.dispatchEvent(new Event(SIGN_IN_EVENT));
}

/** Moves a `#token=…` from the address into storage, so that it is not left in the address bar or history. */
export function takeTokenFromUrl(loc: Location = window.location, storage: Storage = window.sessionStorage): void {
  const m = /^#token=([^&]+)(?:&(.*))?$/.exec(loc.hash);
  if (!m) return;
  setToken(decodeURIComponent(m[1]), storage);
  const rest = m[2] ? `#${decodeURIComponent(m[2])}` : "";
  window.history.replaceState(null, "", `${loc.pathname}${loc.search}${rest}`);
}

/** The scopes and expiry a token claims (read for display only: Envoy checks the signature). */
export function describeToken(token: string | null): { scopes: string[]; expires: Date | null; subject: string } | null {
  if (!token) return null;
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const claims = JSON.parse(atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), "=")));
    return {
      scopes: typeof claims.scope === "string" ? claims.scope.split(" ").filter(Boolean) : [],
      expires: typeof claims.exp === "number" ? new Date(claims.exp * 1000) : null,
      subject: typeof claims.sub === "string" ? claims.sub : "",
    };
  } catch {
    return null;
  }
}

export const authInterceptor: Interceptor = (next) => async (req) => {
  const token = getToken();
  if (token) req.header.set("authorization", `Bearer ${token}`);
  try {
    return await next(req);
  } catch (err) {
    if (ConnectError.from(err).code === Code.Unauthenticated) window.dispatchEvent(new Event(SIGN_IN_EVENT));
    throw err;
  }
};
