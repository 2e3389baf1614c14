// A real OpenID Connect provider on loopback for the Google sign-in tests (npm
// `oauth2-mock-server`), with per-test scenarios. Used by the server's integration tests
// (server/tests/google_http.rs) and by Playwright (end2end/servers.ts).
//
//   node oidc-provider.mjs [PORT [CONTROL_PORT]]
// prints one line `OIDC issuer=<url> control=<url>` once both listen (0 or none: a free
// port). `POST <control>/scenario` with JSON {name, sub, email} sets how the next
// ID tokens are made (until changed); `POST <control>/rotate` adds a new signing key and
// signs with it from then on.
import crypto from "node:crypto";
import http from "node:http";
import { OAuth2Server } from "oauth2-mock-server";

const port = Number(process.argv[2] ?? 0);
const controlPort = Number(process.argv[3] ?? 0);
const provider = new OAuth2Server();
let key = await provider.issuer.keys.generate("RS256", { kid: "key-1" });
let keyCount = 1;
let scenario = { name: "ok", sub: "google-sub-1", email: "google.user@example.org" };

const b64 = (buf) => Buffer.from(buf).toString("base64url");
const encode = (obj) => b64(JSON.stringify(obj));
const decode = (part) => JSON.parse(Buffer.from(part, "base64url").toString("utf8"));

function signRs256(header, payload, jwk) {
  const input = `${encode(header)}.${encode(payload)}`;
  const privateKey = crypto.createPrivateKey({ key: jwk, format: "jwk" });
  return `${input}.${b64(crypto.sign("sha256", Buffer.from(input), privateKey))}`;
}

function idToken(original, clientSecret) {
  const payload = decode(original.split(".")[1]);
  const now = Math.floor(Date.now() / 1000);
  payload.sub = scenario.sub;
  payload.email = scenario.email;
  payload.email_verified = true;
  const header = { alg: "RS256", typ: "JWT", kid: key.kid };
  switch (scenario.name) {
    case "ok":
      break;
    case "wrong_aud":
      payload.aud = "another-client";
      break;
    case "extra_aud":
      payload.aud = [payload.aud, "untrusted-client"];
      break;
    case "wrong_nonce":
      payload.nonce = "not-the-nonce";
      break;
    case "missing_nonce":
      delete payload.nonce;
      break;
    case "expired":
      payload.iat = now - 7200;
      payload.nbf = now - 7200;
      payload.exp = now - 3600;
      break;
    case "wrong_issuer":
      payload.iss = "https://accounts.google.com.evil.example";
      break;
    case "email_unverified":
      payload.email_verified = false;
      break;
    case "unknown_kid":
      header.kid = "no-such-key";
      break;
    case "flipped_signature": {
      const token = signRs256(header, payload, key);
      const [h, p, s] = token.split(".");
      const sig = Buffer.from(s, "base64url");
      sig[10] ^= 0x01;
      return `${h}.${p}.${b64(sig)}`;
    }
    case "alg_none":
      return `${encode({ alg: "none", typ: "JWT" })}.${encode(payload)}.`;
    case "hs256": {
      // signed with the client secret, which the client knows: must not be accepted
      const h = { alg: "HS256", typ: "JWT", kid: key.kid };
      const input = `${encode(h)}.${encode(payload)}`;
      return `${input}.${b64(crypto.createHmac("sha256", clientSecret).update(input).digest())}`;
    }
    default:
      throw new Error(`unknown scenario ${scenario.name}`);
  }
  return signRs256(header, payload, key);
}

provider.service.on("beforeResponse", (response, req) => {
  if (typeof response.body.id_token !== "string") return;
  const basic = (req.headers.authorization ?? "").replace(/^Basic /, "");
  const secret = decodeURIComponent(Buffer.from(basic, "base64").toString("utf8").split(":")[1] ?? "");
  response.body.id_token = idToken(response.body.id_token, secret);
});

await provider.start(port, "127.0.0.1");
// the loopback address, not `localhost` (which may resolve to ::1 first)
provider.issuer.url = `http://127.0.0.1:${provider.address().port}`;

const control = http.createServer((req, res) => {
  let body = "";
  req.on("data", (c) => (body += c));
  req.on("end", async () => {
    try {
      if (req.method === "POST" && req.url === "/scenario") {
        scenario = { ...{ name: "ok", sub: "google-sub-1", email: "google.user@example.org" }, ...JSON.parse(body) };
      } else if (req.method === "POST" && req.url === "/rotate") {
        keyCount += 1;
        key = await provider.issuer.keys.generate("RS256", { kid: `key-${keyCount}` });
      } else {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(204).end();
    } catch (e) {
      res.writeHead(400).end(String(e));
    }
  });
});
control.listen(controlPort, "127.0.0.1", () => {
  console.log(`OIDC issuer=${provider.issuer.url} control=http://127.0.0.1:${control.address().port}`);
});

const stop = async () => {
  control.close();
  await provider.stop();
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
