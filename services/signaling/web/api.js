// signaling's HTTP API, with errors a person can act on.
//
// Every failure is an ApiError whose `message` is written for the person in front of
// the page; `code` and `status` keep what the server said, for the details line.

export class ApiError extends Error {
  constructor(status, code, message, detail = "") {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.detail = detail;
  }
}

const UNREACHABLE =
  "Can't reach the voxrelay server. Check that it is running and that this device is on the same network, then try again.";

// `adminKey`: the server's admin key, when it asks for one (a server on loopback may not).
export function createSession(name, adminKey) {
  return request("POST", "/v1/sessions", { body: { name }, token: adminKey || undefined });
}

export function getSession(sessionId, token) {
  return request("GET", `/v1/sessions/${encodeURIComponent(sessionId)}`, { token });
}

export function join(sessionId, token, offer) {
  return request("POST", `/v1/sessions/${encodeURIComponent(sessionId)}/clients`,
    { body: offer, token });
}

export function leave(sessionId, token, clientId) {
  return request("DELETE",
    `/v1/sessions/${encodeURIComponent(sessionId)}/clients/${encodeURIComponent(clientId)}`,
    { token, keepalive: true });
}

// Leave, when there may be nothing left to release (the conversation already ended).
export async function leaveQuietly(sessionId, token, clientId) {
  if (!clientId) return;
  try {
    await leave(sessionId, token, clientId);
  } catch {
    // already gone on the server: nothing left to release
  }
}

// Direct mode: an ephemeral Realtime key for this session (the server's own key never
// comes here), good for one call.
export function clientSecret(sessionId, token, name) {
  return request("POST", "/v1/realtime/client_secrets",
    { body: { session_id: sessionId, name }, token });
}

// Direct mode: the offer for a call straight to the Realtime API, posted as the API takes
// it (application/sdp, the ephemeral key as the bearer); the server places it and follows it.
export async function directCall(ephemeralKey, sdp) {
  const response = await send("POST", "/v1/realtime/calls",
    { raw: sdp, contentType: "application/sdp", token: ephemeralKey });
  return {
    sdp: await response.text(),
    clientId: response.headers.get("Voxrelay-Client-Id"),
    callId: (response.headers.get("Location") ?? "").split("/").pop(),
  };
}

async function request(method, path, { body, token, keepalive = false } = {}) {
  const response = await send(method, path, {
    raw: body === undefined ? undefined : JSON.stringify(body),
    contentType: body === undefined ? undefined : "application/json",
    token, keepalive,
  });
  if (response.status === 204) return null;
  return response.json();
}

// The response if it is a success; an ApiError a person can act on otherwise.
async function send(method, path, { raw, contentType, token, keepalive = false }) {
  const headers = {};
  if (contentType) headers["Content-Type"] = contentType;
  if (token) headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(path, { method, headers, keepalive, cache: "no-store", body: raw });
  } catch (e) {
    throw new ApiError(0, "unreachable", UNREACHABLE, String(e));
  }
  if (response.ok) return response;
  let payload = null;
  try {
    payload = await response.json();
  } catch {
    // not JSON (a proxy's error page): handled by the status below
  }
  const error = payload?.error ?? {};
  throw explain(response.status, error.code ?? "http_error", error.message ?? response.statusText);
}

function explain(status, code, serverMessage) {
  const detail = `${status} ${code}: ${serverMessage}`;
  if (status === 429 || code === "session_full") {
    return new ApiError(status, "session_full", `This conversation is full. ${serverMessage}`, detail);
  }
  if (code === "token_expired") {
    return new ApiError(status, code,
      "This link has expired. Ask for a fresh link or start a new conversation.", detail);
  }
  if (status === 401 || status === 403) {
    return new ApiError(status, code,
      "This link is not valid for this conversation. Ask for a fresh link or start a new conversation.",
      detail);
  }
  if (code === "session_not_found" || (status === 404 && code !== "client_not_found")) {
    return new ApiError(status, "session_not_found",
      "This conversation doesn't exist anymore (it may have ended, or the server restarted). Start a new one.",
      detail);
  }
  if (code === "session_ended" || status === 409) {
    return new ApiError(status, "session_ended", "This conversation has ended. Start a new one.", detail);
  }
  if (status === 503 || status === 502 || status === 504) {
    return new ApiError(status, code,
      "The server is busy starting up or a part of it is down. Try again in a moment.", detail);
  }
  return new ApiError(status, code, serverMessage || `The server answered ${status}.`, detail);
}
