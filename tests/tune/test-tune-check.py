# SPDX-License-Identifier: MIT
# Description: ringcast-tune as an operator runs it, on this host. check
# reports the real RLIMIT_NOFILE hard limit as short or enough depending on
# the shard count, with the exit code to match; --json parses and agrees
# with the text; every profile key is checked; apply --dry-run prints its
# plan and changes nothing. Never writes a sysctl.
# usage: test-tune-check.py RINGCAST_TUNE SYSCTL_DIR
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile

TUNE, SYSCTL_DIR = sys.argv[1], sys.argv[2]
FILES_PER_RING_MAX = 1 << 20    # IORING_MAX_FIXED_FILES
CONNS = 1000000


def run(*args):
    p = subprocess.run([TUNE, *args], capture_output=True, text=True,
                       timeout=30)
    return p.returncode, p.stdout, p.stderr


def check_json(*args):
    rc, out, err = run('check', '--json', *args)
    assert rc in (0, 1), (rc, err)
    doc = json.loads(out)
    items = {it['name']: it for it in doc['items']}
    assert len(items) == len(doc['items']), 'item names repeat'
    # The exit code says whether every item holds, and so does "ok".
    all_ok = all(it['ok'] for it in doc['items'])
    assert doc['ok'] == all_ok, doc
    assert rc == (0 if all_ok else 1), (rc, [i for i in items.values()
                                             if not i['ok']])
    for it in doc['items']:
        assert it['have'] and it['need'], it
        assert it['ok'] or it['fix'], ('a short item needs a fix', it)
    return rc, doc, items


def per_ring_cap(hard):
    if hard == resource.RLIM_INFINITY or hard > FILES_PER_RING_MAX:
        return FILES_PER_RING_MAX
    return hard


def test_nofile(shards):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = min(-(-CONNS // shards), FILES_PER_RING_MAX)
    enough = per_ring_cap(hard) >= need
    rc, doc, items = check_json('--conns', str(CONNS), '--shards',
                                str(shards), '--profile', 'none')
    assert doc['conns'] == CONNS and doc['shards'] == shards
    nofile = items['rlimit.nofile']
    assert 'hard %d' % hard in nofile['have'] or \
        hard == resource.RLIM_INFINITY, nofile
    assert nofile['ok'] == enough, (shards, hard, nofile)
    assert items['io_uring.fixed_files']['ok'] == enough, items
    if not enough:
        assert rc == 1
        assert '--shards' in nofile['fix'] and 'LimitNOFILE' in nofile['fix']
        assert not items['rlimit.nofile.raise']['ok'] or \
            'CAP_SYS_RESOURCE yes' in items['rlimit.nofile.raise']['have']
    # No profile: only kernel, io_uring, limits, memory (and conntrack).
    assert not any(n.startswith(('net.core', 'net.ipv4', 'fs.'))
                   for n in items)
    print('shards=%d hard=%d: nofile %s, exit %d' %
          (shards, hard, 'enough' if enough else 'short', rc))
    return rc, enough


def test_this_host():
    # The container this project is built in has a hard limit of 20000
    # that it cannot raise; elsewhere only the consistency checks apply.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    rc2, enough2 = test_nofile(2)
    rc56, enough56 = test_nofile(56)
    if hard == 20000:
        assert not enough2 and rc2 == 1
        assert enough56


def test_text_matches_json():
    args = ['--conns', str(CONNS), '--shards', '2']
    rc, out, err = run('check', *args)
    rcj, doc, items = check_json(*args)
    assert rc == rcj, (rc, rcj)
    lines = out.splitlines()
    assert lines[0].startswith('ringcast-tune check: %d connections on 2 '
                               'shards' % CONNS), lines[0]
    body = [l for l in lines[1:-1]]
    assert len(body) == len(doc['items']), (len(body), len(doc['items']))
    for line, it in zip(body, doc['items']):
        status, name = line.split()[:2]
        assert status == ('ok' if it['ok'] else 'short'), (line, it)
        assert name == it['name'], (line, it)
        assert ('fix: ' in line) == (not it['ok']), line
    nofile = [l for l in body if l.split()[1] == 'rlimit.nofile'][0]
    print(nofile)


def profile_keys(name):
    keys = []
    with open(os.path.join(SYSCTL_DIR, '90-ringcast-%s.conf' % name)) as f:
        for line in f:
            line = line.strip()
            if line and line[0] not in '#;':
                keys.append(line.split('=')[0].strip().lstrip('-'))
    return keys


def test_profile_items():
    for name in ('server', 'loadgen'):
        rc, doc, items = check_json('--conns', str(CONNS), '--profile', name,
                                    '--sysctl-dir', SYSCTL_DIR)
        assert doc['profile'].endswith('90-ringcast-%s.conf' % name)
        for key in profile_keys(name):
            assert key in items, (name, key)
            it = items[key]
            live = ' '.join(open('/proc/sys/' + key.replace('.', '/'))
                            .read().split())
            assert it['have'] == live, (it, live)
            if not it['ok']:
                assert it['fix'].startswith('sysctl -w ' + key + '='), it


def snapshot():
    vals = {}
    for name in ('server', 'loadgen'):
        for key in profile_keys(name):
            with open('/proc/sys/' + key.replace('.', '/')) as f:
                vals[key] = f.read()
    for name in ('server', 'loadgen'):
        path = '/etc/sysctl.d/90-ringcast-%s.conf' % name
        vals[path] = os.stat(path).st_mtime_ns if os.path.exists(path) \
            else None
    return vals


def test_apply_dry_run():
    before = snapshot()
    with tempfile.TemporaryDirectory() as dest:
        for name in ('server', 'loadgen'):
            rc, out, err = run('apply', '--profile', name, '--dry-run')
            assert rc == 0, (rc, out, err)
            assert 'dry run' in out.splitlines()[0], out
            assert 'would write /etc/sysctl.d/90-ringcast-%s.conf' % name \
                in out, out
            for key in profile_keys(name):
                assert key in out, (key, out)
            rc, out, err = run('apply', '--profile', name, '--dry-run',
                               '--dest', dest)
            assert rc == 0 and dest in out, (rc, out, err)
        assert os.listdir(dest) == [], os.listdir(dest)
    assert snapshot() == before, 'apply --dry-run changed something'


def test_apply_needs_root():
    # As nobody, apply refuses before reading or writing anything.
    if os.geteuid() != 0 or not shutil.which('setpriv'):
        return
    p = subprocess.run(['setpriv', '--reuid=65534', '--regid=65534',
                        '--clear-groups', TUNE, 'apply', '--profile',
                        'server', '--sysctl-dir', SYSCTL_DIR],
                       capture_output=True, text=True, timeout=30)
    if p.returncode in (126, 127):      # the build tree is not theirs
        return
    assert p.returncode == 1 and 'as root' in p.stderr, p


def test_usage():
    assert run('check')[0] == 2                       # no --conns
    assert run('check', '--conns', 'many')[0] == 2
    assert run('check', '--conns', '10', '--profile', 'nonesuch')[0] == 2
    assert run('apply', '--dry-run')[0] == 2          # no --profile
    assert run('frobnicate')[0] == 2
    assert run('--help')[0] == 0


def main():
    test_usage()
    test_this_host()
    test_text_matches_json()
    test_profile_items()
    test_apply_dry_run()
    test_apply_needs_root()
    return 0


if __name__ == '__main__':
    sys.exit(main())
