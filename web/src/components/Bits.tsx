// Small shared pieces: error box, stream status badge, state chip, job link.
import type { JobState } from "@gen/satlas/v1/job_state_pb.js";
import { describeError } from "../errors";
import { stateName } from "../feed";
import type { StreamStatus } from "../stream";

export function ErrorBox({ error, context }: { error: unknown; context?: string }) {
  if (!error) return null;
  const e = describeError(error);
  return (
    <div className="error" role="alert">
      <strong>{e.code}</strong>
      {context && <span> {context}:</span>} <span className="msg">{e.message}</span>
      {e.violations.length > 0 && (
        <ul className="violations">
          {e.violations.map((v, i) => (
            <li key={i}>
              <code>{v.field}</code>: {v.description}
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}

export function StreamBadge({ status, label }: { status: StreamStatus; label?: string }) {
  const text =
    status.state === "live"
      ? "live"
      : status.state === "connecting"
        ? "connecting…"
        : status.state === "reconnecting"
          ? `reconnecting… (attempt ${status.attempt})`
          : status.state === "ended"
            ? "ended"
            : "stream failed";
  const why = status.state === "reconnecting" && status.error ? describeError(status.error) : undefined;
  return (
    <span className={`badge ${status.state}`} role="status" title={why ? `${why.code}: ${why.message}` : undefined}>
      {label ? `${label}: ` : ""}
      {text}
    </span>
  );
}

export function StateChip({ state }: { state: JobState }) {
  const name = stateName(state);
  return <span className={`state s-${name.toLowerCase()}`}>{name}</span>;
}

/** A link into the main app that keeps `?api=`. */
export function appHref(hash: string, page = "./"): string {
  return `${page}${window.location.search}${hash ? "#" + hash : ""}`;
}

/** A job id's last 8 characters: ids are version-7 UUIDs, which begin with the time, so their
 * first characters are the same for every job of the same minute; the end is random. */
export function shortId(id: string): string {
  return id.slice(-8);
}

export function JobLink({ id }: { id: string }) {
  return (
    <a href={appHref(`/jobs/${encodeURIComponent(id)}`)} className="mono" title={id}>
      {shortId(id)}
    </a>
  );
}
