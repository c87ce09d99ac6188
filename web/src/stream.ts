// A server stream that reopens itself: on an error or an unexpected end it waits (exponential
// backoff with jitter, reset once a stream has delivered) and calls `open` again, reporting
// "connecting" → "live" → "reconnecting" … so the page can say so. Errors that retrying cannot
// fix (INVALID_ARGUMENT, NOT_FOUND, …) stop it with "failed".
import { isPermanent } from "./errors";

export type StreamState = "connecting" | "live" | "reconnecting" | "ended" | "failed";
export type StreamStatus = { state: StreamState; attempt: number; error?: unknown };

export type OpenStream<T> = (opts: { signal: AbortSignal; onHeader: () => void }) => AsyncIterable<T>;

export type FollowOptions<T> = {
  signal: AbortSignal;
  onMessage: (msg: T) => void;
  onStatus?: (s: StreamStatus) => void;
  /** True when a clean end of the stream is final (WatchJob after a terminal state). */
  endIsFinal?: () => boolean;
  initialDelayMs?: number;
  maxDelayMs?: number;
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
};

export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done);
  });
}

export async function followStream<T>(open: OpenStream<T>, o: FollowOptions<T>): Promise<void> {
  const initial = o.initialDelayMs ?? 500;
  const max = o.maxDelayMs ?? 10_000;
  const wait = o.sleep ?? sleep;
  let delay = initial;
  let attempt = 0;
  let lastError: unknown;
  while (!o.signal.aborted) {
    if (attempt === 0) o.onStatus?.({ state: "connecting", attempt });
    let live = false;
    const markLive = () => {
      if (!live && !o.signal.aborted) {
        live = true;
        delay = initial;
        o.onStatus?.({ state: "live", attempt });
      }
    };
    try {
      for await (const msg of open({ signal: o.signal, onHeader: markLive })) {
        markLive();
        o.onMessage(msg);
      }
      if (o.signal.aborted) return;
      if (o.endIsFinal?.()) {
        o.onStatus?.({ state: "ended", attempt });
        return;
      }
      lastError = new Error("stream closed by the server");
    } catch (err) {
      if (o.signal.aborted) return;
      if (isPermanent(err)) {
        o.onStatus?.({ state: "failed", attempt, error: err });
        return;
      }
      lastError = err;
    }
    attempt += 1;
    o.onStatus?.({ state: "reconnecting", attempt, error: lastError });
    await wait(delay * (0.75 + Math.random() * 0.5), o.signal);
    delay = Math.min(delay * 2, max);
  }
}
