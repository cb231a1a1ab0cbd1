// Testcontainers recipe: one authmock container for this file's tests.
// It starts the image, waits until GET /__admin/health answers 200, and reads
// the host port Docker mapped to the container's 8080; the tests then use
// that base URL as MESH_BASE_URL and ONLYOFFICE_BASE_URL would be used.
//   AUTHMOCK_IMAGE=ghcr.io/OWNER/authmock:0.1.0 npm test
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { GenericContainer, Wait } from "testcontainers";

const image = process.env.AUTHMOCK_IMAGE ?? "ghcr.io/OWNER/authmock:0.1.0";
let container;
let baseUrl;

before(async () => {
  container = await new GenericContainer(image)
    .withExposedPorts(8080)
    .withEnvironment({ AUTHMOCK_SEED: "1" })
    .withWaitStrategy(Wait.forHttp("/__admin/health", 8080).forStatusCode(200))
    .withStartupTimeout(30_000)
    .start();
  baseUrl = `http://${container.getHost()}:${container.getMappedPort(8080)}`;
});

after(async () => {
  await container?.stop();
});

// Each test works in a namespace of its own, so tests may run in any order.
const mesh = (body, namespace) =>
  fetch(`${baseUrl}/api/v1/authenticate?userId=testcontainers`, {
    method: "POST",
    headers: {
      "X-Client-Id": "test-client-id",
      "X-Client-Secret": "test-client-secret",
      "Content-Type": "application/json",
      "X-Authmock-Namespace": namespace,
    },
    body: JSON.stringify(body),
  });

test("the mapped port answers the health route", async () => {
  const res = await fetch(`${baseUrl}/__admin/health`);
  assert.equal(res.status, 200);
  assert.equal((await res.json()).status, "ok");
});

test("a mesh MFA login walks through the mapped port", async () => {
  let res = await mesh(
    { type: "robinhood", username: "mfa.totp@example.com", password: "pass123" },
    "tc-mfa",
  );
  assert.equal(res.status, 200);
  assert.equal((await res.json()).content.status, "mfaRequired");
  res = await mesh({ type: "robinhood", mfaCode: "123456" }, "tc-mfa");
  const body = await res.json();
  assert.equal(body.content.status, "succeeded");
  assert.ok(body.content.accountTokens[0].accessToken);
});

test("an onlyoffice login without a second factor returns a token", async () => {
  const res = await fetch(`${baseUrl}/api/2.0/authentication`, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-Authmock-Namespace": "tc-oo" },
    body: JSON.stringify({ userName: "jane@example.com", password: "pass123" }),
  });
  assert.equal(res.status, 200);
  assert.ok((await res.json()).response.token);
});
