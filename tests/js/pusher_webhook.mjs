// SPDX-License-Identifier: MIT
// Validates webhook requests ringcast sent with the official `pusher`
// server SDK's own WebHook class (test_webhook.py runs it): each request
// ({headers with lower-case keys, body}) read as JSON from the file
// named on the command line, checked with the app's key and secret, and
// once more with a wrong secret, which must fail. Prints one JSON line:
// for each request, whether it is valid, valid with the wrong secret,
// its time and its events.
// Usage: node pusher_webhook.mjs APP_JSON REQUESTS_FILE
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';

const require = createRequire(import.meta.url);
const Pusher = require('pusher');

const [appText, file] = process.argv.slice(2);
const app = JSON.parse(appText);
const sdk = (secret) => new Pusher({ appId: app.id, key: app.key,
                                     secret, host: '127.0.0.1' });
const good = sdk(app.secret), bad = sdk(app.secret + 'x');
const out = JSON.parse(readFileSync(file, 'utf8')).map((req) => {
    const hook = good.webhook({ headers: req.headers, rawBody: req.body });
    const forged = bad.webhook({ headers: req.headers, rawBody: req.body });
    const valid = hook.isValid();
    return {
        valid, forged: forged.isValid(),
        time: valid ? hook.getTime().getTime() : null,
        events: valid ? hook.getEvents() : null,
    };
});
console.log(JSON.stringify(out));
