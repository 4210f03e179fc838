# SPDX-License-Identifier: MIT
"""The Pusher front door's apps (issue 26, docs/PUSHER.md): from
--pusher-app, RINGCAST_PUSHER_APPS and --pusher-apps-file; a bad one
stops the engine without its secret in the message."""

import os
import subprocess
import tempfile

import rc
from rc import expect

APP = {"id": "42", "key": "key-42", "secret": "s3cret-42"}
SPEC = "%(id)s:%(key)s:%(secret)s"


def check_options(run):
    exe = run.exe

    def refused(args, env=None, words=()):
        p = subprocess.run([exe, "--listen", "127.0.0.1:0"] + args,
                           capture_output=True, text=True, timeout=30,
                           env=dict(os.environ, **(env or {})))
        expect(p.returncode != 0, "%s started", args)
        for w in words:
            expect(w in p.stderr, "%r not in %r", w, p.stderr)
        expect("s3cret" not in p.stderr and "Xsecret" not in p.stderr,
               "a secret in %r", p.stderr)
        return p.stderr

    refused(["--pusher-app", "1:k:s3cret:x"])
    refused(["--pusher-app", "1:k:s3cret", "--pusher-app", "1:k2:s3cret"],
            words=["given twice"])
    refused(["--pusher-client-events", "9", "--pusher-app", SPEC % APP],
            words=["no app has this ID"])
    refused([], env={"RINGCAST_PUSHER_APPS": "1:k:s3cret\n2:k:Xsecret"},
            words=["RINGCAST_PUSHER_APPS, line 2"])
    with tempfile.NamedTemporaryFile("w", suffix=".apps") as f:
        f.write("# apps\n%s\n7:k7:Xsecret!\n" % (SPEC % APP))
        f.flush()
        refused(["--pusher-apps-file", f.name], words=[f.name + ", line 3"])
    refused(["--pusher-apps-file", "/nonexistent/apps"],
            words=["No such file"])


def body(run):
    run.check("options: bad apps refused, secrets unsaid", check_options,
              run)


rc.main("test_pusher", body)
