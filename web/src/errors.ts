// Backend errors as the page shows them: the gRPC status name, the message, and the
// google.rpc.BadRequest field violations that the services put in grpc-status-details-bin.
// connect-web decodes that trailer into google.rpc.Status; findDetails picks out BadRequest.
import { Code, ConnectError } from "@connectrpc/connect";
import { BadRequestSchema } from "@gen/google/rpc/error_details_pb.js";

export type Violation = { field: string; description: string };
export type ShownError = { code: string; message: string; violations: Violation[] };

/** GRPC-style name of a status code: Code.InvalidArgument → "INVALID_ARGUMENT". */
export function codeName(code: Code): string {
  const name = Code[code] ?? String(code);
  return name.replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
}

export function describeError(err: unknown): ShownError {
  const ce = ConnectError.from(err);
  const violations: Violation[] = [];
  for (const br of ce.findDetails(BadRequestSchema)) {
    for (const v of br.fieldViolations) violations.push({ field: v.field, description: v.description });
  }
  return { code: codeName(ce.code), message: ce.rawMessage, violations };
}

/** Errors that will not go away by retrying the same call. */
export function isPermanent(err: unknown): boolean {
  const code = ConnectError.from(err).code;
  return [Code.InvalidArgument, Code.NotFound, Code.PermissionDenied, Code.Unauthenticated, Code.Unimplemented, Code.FailedPrecondition].includes(code);
}
