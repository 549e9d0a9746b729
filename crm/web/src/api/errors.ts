// The services' one error body ({error_id, message, details: [{field, message}]}) as the
// pages use it: per-field messages for forms, one line for everything else.
import type { ErrorBody } from "./types";

export class ApiFailure extends Error {
  readonly status: number;
  readonly errorId: string;
  readonly details: { field: string; message: string }[];

  constructor(status: number, body: unknown) {
    const parsed = asErrorBody(body);
    super(parsed?.message ?? `HTTP ${status}`);
    this.name = "ApiFailure";
    this.status = status;
    this.errorId = parsed?.error_id ?? "http-error";
    this.details = parsed?.details ?? [];
  }
}

export function asErrorBody(body: unknown): ErrorBody | null {
  if (typeof body !== "object" || body === null) return null;
  const candidate = body as Partial<ErrorBody>;
  if (typeof candidate.error_id !== "string" || typeof candidate.message !== "string") {
    return null;
  }
  return {
    error_id: candidate.error_id,
    message: candidate.message,
    details: Array.isArray(candidate.details) ? candidate.details : [],
  };
}

/**
 * Field problems keyed by the form's field path: "body.phones[1]" -> "phones[1]",
 * "query.phone" -> "phone". Several problems of one field are joined.
 */
export function fieldErrors(failure: ApiFailure): Record<string, string> {
  const fields: Record<string, string> = {};
  for (const detail of failure.details) {
    const key = detail.field.replace(/^(body|query|path|header)\./, "");
    fields[key] = fields[key] ? `${fields[key]}; ${detail.message}` : detail.message;
  }
  return fields;
}

interface Result<T> {
  data?: T;
  error?: unknown;
  response: Response;
}

/** The data of a successful call; an ApiFailure for anything else. */
export function unwrap<T>(result: Result<T>): T {
  if (result.error !== undefined || !result.response.ok) {
    throw new ApiFailure(result.response.status, result.error);
  }
  return result.data as T;
}

export function errorText(error: unknown): string {
  if (error instanceof ApiFailure) return error.message;
  if (error instanceof Error) return error.message;
  return String(error);
}
