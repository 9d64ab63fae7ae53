// A real OpenID provider for vitaltrail's tests: panva's oidc-provider (OpenID Certified),
// configured for the client-credentials grant with RFC 9068 JWT access tokens (resource
// indicators, RFC 8707). Started by tests/oidc/provider.py on a free loopback port:
//   node provider.mjs <port> <resource>[,<resource>...] <client_id> <client_secret> <scopes>
// The first resource is the default audience. The signing key is made at start and lives
// only in memory; the provider publishes it at its jwks_uri like any other.
import { generateKeyPairSync } from 'node:crypto';
import { createServer } from 'node:http';
import Provider, { errors } from 'oidc-provider';

const [port, resources, clientId, clientSecret, scopes] = process.argv.slice(2);
const audiences = resources.split(',');
const issuer = `http://127.0.0.1:${port}`;

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: 'test-rs256', alg: 'RS256', use: 'sig' };

const provider = new Provider(issuer, {
  jwks: { keys: [signingKey] },
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    grant_types: ['client_credentials'],
    redirect_uris: [],
    response_types: [],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => audiences[0],
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resourceIndicator) => {
        if (!audiences.includes(resourceIndicator)) throw new errors.InvalidTarget();
        return {
          scope: scopes,
          audience: resourceIndicator,
          accessTokenTTL: 300,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
});

createServer(provider.callback()).listen(Number(port), '127.0.0.1', () => {
  console.log(`oidc-provider ${issuer} ready`);
});
