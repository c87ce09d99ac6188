// Sign-in: shown when a call is answered UNAUTHENTICATED (no token, an expired or foreign one).
// The token is pasted once and kept for the browser session; `make run` prints a link that signs
// in directly, `make token SCOPES=read` makes a narrower one.
import { useEffect, useState, type ReactNode } from "react";
import { describeToken, getToken, setToken, signOut, SIGN_IN_EVENT } from "../auth";

export function AuthGate({ children }: { children: ReactNode }) {
  const [asked, setAsked] = useState(false);
  useEffect(() => {
    const ask = () => setAsked(true);
    window.addEventListener(SIGN_IN_EVENT, ask);
    return () => window.removeEventListener(SIGN_IN_EVENT, ask);
  }, []);
  return asked ? <SignIn /> : <>{children}</>;
}

export function SignIn() {
  const [text, setText] = useState("");
  const had = getToken();
  const submit = (e: React.FormEvent) => {
    e.preventDefault();
    if (!text.trim()) return;
    setToken(text);
    window.location.reload();
  };
  return (
    <div className="app signin">
      <h1>Satlas</h1>
      <form onSubmit={submit}>
        <p>{had ? "The token was refused (expired, or not signed by this stack). " : ""}Sign in with a token.</p>
        <label>
          Token
          <textarea
            aria-label="Token"
            value={text}
            onChange={(e) => setText(e.target.value)}
            rows={5}
            spellCheck={false}
            placeholder="eyJhbGciOiJFUzI1NiIs…"
          />
        </label>
        <button type="submit">Sign in</button>
        <p className="muted">
          <code>make up</code> leaves one with every scope in <code>.run/auth/token</code>;{" "}
          <code>make token SCOPES=read</code> prints a narrower one. It is kept for this browser session only.
        </p>
      </form>
    </div>
  );
}

/** Who is signed in, with what scopes, and a way out (nothing when no token is kept). */
export function Account() {
  const info = describeToken(getToken());
  if (!info) return null;
  return (
    <span className="account">
      signed in{info.subject ? ` as ${info.subject}` : ""}: {info.scopes.join(", ") || "no scopes"}{" "}
      <button type="button" className="link" onClick={() => signOut()}>
        sign out
      </button>
    </span>
  );
}
