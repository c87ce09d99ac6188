import { afterEach, describe, expect, it } from "vitest";
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import { act, render, screen } from "@testing-library/react";
import { AnalysisService } from "@gen/satlas/v1/analysis_service_pb.js";
import { authInterceptor, describeToken, getToken, setToken, SIGN_IN_EVENT, takeTokenFromUrl } from "../src/auth";
import { Account, AuthGate } from "../src/components/SignIn";

// A token's shape with these claims (unsigned: the page only reads claims, Envoy verifies).
const b64 = (o: object) => btoa(JSON.stringify(o)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
const token = (claims: object) => `${b64({ alg: "ES256" })}.${b64(claims)}.c2ln`;

afterEach(() => {
  window.sessionStorage.clear();
  window.history.replaceState(null, "", "/");
});

describe("auth", () => {
  it("takes a #token= link into session storage and out of the address bar", () => {
    window.history.replaceState(null, "", "/dashboard.html?api=x#token=abc.def.ghi");
    takeTokenFromUrl();
    expect(getToken()).toBe("abc.def.ghi");
    expect(window.location.hash).toBe("");
    expect(window.location.search).toBe("?api=x");
  });

  it("keeps a route that follows the token", () => {
    window.history.replaceState(null, "", "/#token=t1&/jobs");
    takeTokenFromUrl();
    expect([getToken(), window.location.hash]).toEqual(["t1", "#/jobs"]);
  });

  it("reads scopes, subject and expiry from the claims", () => {
    const info = describeToken(token({ sub: "ana", scope: "read submit", exp: 2000000000 }));
    expect(info).toEqual({ scopes: ["read", "submit"], subject: "ana", expires: new Date(2000000000 * 1000) });
    expect(describeToken("not a token")).toBeNull();
  });

  it("sends the token on every call and asks for sign-in when it is refused", async () => {
    const seen: (string | null)[] = [];
    const transport = createRouterTransport(
      ({ service }) => {
        service(AnalysisService, {
          listModels: (_req, ctx) => {
            seen.push(ctx.requestHeader.get("authorization"));
            throw new ConnectError("Jwt is expired", Code.Unauthenticated);
          },
        });
      },
      { transport: { interceptors: [authInterceptor] } },
    );
    let asked = 0;
    const ask = () => (asked += 1);
    window.addEventListener(SIGN_IN_EVENT, ask);
    setToken("tok-1");
    await expect(createClient(AnalysisService, transport).listModels({})).rejects.toThrow(/expired/);
    window.removeEventListener(SIGN_IN_EVENT, ask);
    expect(seen).toEqual(["Bearer tok-1"]);
    expect(asked).toBe(1);
  });

  it("shows the sign-in view in place of the page when asked, and who is signed in otherwise", () => {
    setToken(token({ sub: "local", scope: "read" }));
    render(
      <AuthGate>
        <Account />
      </AuthGate>,
    );
    expect(screen.getByText(/signed in as local: read/)).toBeTruthy();
    act(() => {
      window.dispatchEvent(new Event(SIGN_IN_EVENT));
    });
    expect(screen.getByLabelText("Token")).toBeTruthy();
    expect(screen.getByText(/The token was refused/)).toBeTruthy();
  });
});
