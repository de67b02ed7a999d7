"""Mutation testing of the engine's core modules with mutmut (not part of CI).

Each module is mutated in a scratch copy of the repository (``<tmp>/byod-mutation/<module>/``),
so the working tree and anyone running tests in it are never disturbed, and each mutant is
tested against a narrow, fast selection of tests (``MODULES`` below), so a run fits on a
small machine. Equivalent mutants (a change no test can observe because the behaviour is
the same) are listed in ``EQUIVALENT`` with the reason, and left out of the score; their
names number the mutants of the code as it is, so re-check them after a module changes.

    pip install -e '.[mutation]'
    nice -n 10 python scripts/mutation.py                       # every module, one at a time
    nice -n 10 python scripts/mutation.py --module vault --module redact
    nice -n 10 python scripts/mutation.py --module runner --sample 60 --seed 7
    nice -n 10 python scripts/mutation.py --module runner --retest   # after adding tests
    python scripts/mutation.py --module vault --survivors        # print each survivor's diff

The score is killed / (mutants - equivalent), a timeout counting as killed (the mutant
made a test hang, so the suite noticed). ``--sample N`` tests N mutants drawn with
``--seed`` and says so in the summary. Exit code 1 when a module scores under
``--fail-under`` (default 90).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARKERS = "not toolchain and not local and not slow and not browser"


@dataclass(frozen=True)
class Module:
    path: str  # the file mutated, relative to the repository
    tests: tuple[str, ...]  # the tests each mutant runs against


# module -> its narrow test selection (run with MARKERS, so no deployment or npm needed)
MODULES: dict[str, Module] = {
    "vault": Module("engine/vault.py", ("tests/vault",)),
    "redact": Module("engine/redact.py", ("tests/test_redact_mutants.py",)),
    "gate": Module("engine/lifecycle/gate.py", (
        "tests/lifecycle/test_gate_mutants.py", "tests/lifecycle/test_gate.py",
        "tests/lifecycle/connect/test_connect_flow.py",
        "tests/lifecycle/connect/test_validation.py")),
    "planner": Module("engine/plan/planner.py", ("tests/plan",)),
    "widen": Module("engine/plan/widen.py", ("tests/plan",)),
    "runner": Module("engine/fleet/runner.py", ("tests/fleet/runner",)),
    "disconnect": Module("engine/lifecycle/disconnect.py", (
        "tests/lifecycle/disconnect", "tests/lifecycle/test_disconnect_mutants.py")),
    "rules": Module("engine/check/rules.py", ("tests/check",)),
}

# mutant name -> why it cannot be told apart from the original (kept out of the score)
_CODEC = "codec names are case-insensitive: 'UTF-8' is 'utf-8'"
EQUIVALENT: dict[str, str] = {
    "engine.vault.x__b64d__mutmut_6":
        "'=' * (len % 4) instead of (-len % 4): for the lengths unpadded base64 has (len % 4 "
        "in 0, 2, 3) the decoder accepts the surplus padding, so every envelope decodes alike",
    "engine.vault.x_generate_key__mutmut_1":
        "secrets.token_hex(None) draws its default of 32 bytes, the same as _KEY_BYTES",
    "engine.check.rules.x__strip__mutmut_6":
        "len(rest) <= len(members) instead of <: with one non-null member left, the two differ "
        "only for a union of one member, which the type grammar never builds",
    "engine.check.rules.x__table_export__mutmut_31":
        "the location left out of the Table whose Convex export is taken: to_convex_json "
        "does not include the location (Convex has no such notion)",
    "engine.check.rules.x__table_export__mutmut_22":
        "documentType None instead of {'type': 'any'}: the export checks read a missing "
        "document validator as `any` (engine/check/convex_rules.py, `doc is None or ...`)",
    "engine.check.rules.x_check_versions__mutmut_59":
        "ignored.get(file) instead of ignored.get(file, ()): every problem is attributed to "
        "one of the versions' files, and every version's file is a key of `ignored`",
    "engine.fleet.runner.x__execute__mutmut_146":
        "step_bundle(None, step) for a deploy_target step: the bundle is that of "
        "step.version or plan.target, and every deploy_target step the planner and the "
        "refresh plan make names its version (engine/plan/planner.py, fleet/artifacts.py)",
    "engine.plan.planner.x__groups__mutmut_15":
        "checking for a conflict also when the current group is empty: it is empty only "
        "before its first edge, when the writes seen are empty too, and a conflict needs a "
        "write",
    "engine.plan.widen.x__widen_table__mutmut_40":
        "max(room, 1) instead of max(room, 0): room is 32 minus at most 4 search and 4 vector "
        "indexes, never below 24, so the floor is never reached",
    "engine.vault.xǁVaultǁdecrypt__mutmut_42": _CODEC,
    "engine.vault.xǁVaultǁencrypt__mutmut_12": _CODEC,
    "engine.vault.xǁVaultǁfrom_env__mutmut_14":
        "env.get(name, None) or '' is env.get(name, '') or '': both give '' when unset",
    "engine.vault.xǁVaultǁfrom_env__mutmut_16":
        "env.get(name) or '' is env.get(name, '') or '': both give '' when unset",
}

# what a test run inside the scratch copy needs besides engine/ and tests/
# (toolchain/ without node_modules: the selected tests need no npm)
COPY = ("schema_versions", "templates", "toolchain", "pyproject.toml", "README.md", "docs",
        "benchmarks", "Makefile")

KILLED = {1, 3}
TIMEOUT = {36, -24, 24, 152, 255}
SURVIVED = {0}
NO_TESTS = {5, 33}


@dataclass
class Score:
    module: str
    path: str
    total: int = 0
    killed: int = 0
    timeout: int = 0
    survived: list[str] = field(default_factory=list)
    no_tests: list[str] = field(default_factory=list)
    other: list[str] = field(default_factory=list)
    equivalent: list[str] = field(default_factory=list)
    sampled: int | None = None
    seed: int | None = None

    @property
    def counted(self) -> int:
        return self.total - len(self.equivalent)

    @property
    def percent(self) -> float:
        return 100.0 * (self.killed + self.timeout) / self.counted if self.counted else 100.0

    def line(self) -> str:
        scope = f"{self.sampled} sampled (seed {self.seed})" if self.sampled else "all"
        return (f"{self.module:<10} {self.path:<32} {self.percent:5.1f}%  killed "
                f"{self.killed + self.timeout}/{self.counted} ({scope}; timeouts {self.timeout}, "
                f"survived {len(self.survived)}, no tests {len(self.no_tests)}, "
                f"other {len(self.other)}, equivalent excluded {len(self.equivalent)})")


def _ignore(directory: str, names: list[str]) -> set[str]:
    return {n for n in names if n in ("__pycache__", "node_modules", ".hypothesis",
                                       ".pytest_cache") or n.endswith(".pyc")}


def _no_shrinking(work: Path) -> None:
    """Hypothesis tests keep their examples; only shrinking a failure (time spent after a
    mutant is already killed) is skipped in the scratch copy."""

    with (work / "tests" / "conftest.py").open("a") as fh:
        fh.write("\n\nfrom hypothesis import Phase as _Phase, settings as _settings\n\n"
                 "_settings.register_profile('mutation', phases=[_Phase.explicit, "
                 "_Phase.reuse, _Phase.generate])\n_settings.load_profile('mutation')\n")


def prepare(module: Module, work: Path) -> None:
    """A fresh scratch copy with a mutmut configuration for this one module."""

    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    for name in ("engine", "tests"):
        shutil.copytree(ROOT / name, work / name, ignore=_ignore)
    for name in COPY:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, work / name, ignore=_ignore)
        elif src.is_file():
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, work / name)
    _no_shrinking(work)
    write_config(module, work)


def write_config(module: Module, work: Path) -> None:
    """The scratch copy's pyproject.toml: the repository's, plus mutmut's section for this
    module (its test selection: the paths of ``MODULES`` that exist now)."""

    also_copy = [name for name in COPY if (ROOT / name).exists() and name != "pyproject.toml"]
    config = {
        "source_paths": ["engine"],
        "only_mutate": [module.path],
        "also_copy": also_copy,
        "pytest_add_cli_args": ["-p", "no:cacheprovider", "-m", MARKERS, "-q",
                                "--timeout", "120", "--snapshot-warn-unused"],
        "pytest_add_cli_args_test_selection": [t for t in module.tests if (ROOT / t).exists()],
        "use_git_change_detection": False,
        "timeout_multiplier": 10.0,
        "timeout_constant": 5.0,
    }
    lines = ["", "[tool.mutmut]"] + [f"{key} = {json.dumps(value)}" for key, value in config.items()]
    text = (ROOT / "pyproject.toml").read_text()
    (work / "pyproject.toml").write_text(text + "\n".join(lines) + "\n")


def mutmut(work: Path, *args: str) -> int:
    exe = Path(sys.executable).with_name("mutmut")
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.call([str(exe), *args], cwd=work, env=env)


def results(work: Path, module: Module) -> dict[str, int | None]:
    meta = work / "mutants" / (module.path + ".meta")
    if not meta.is_file():
        raise SystemExit(f"mutmut wrote no results for {module.path} ({meta.name} missing)")
    data = json.loads(meta.read_text())
    return dict(data["exit_code_by_key"])


def score(name: str, module: Module, codes: dict[str, int | None],
          only: list[str] | None, seed: int | None) -> Score:
    out = Score(name, module.path, sampled=len(only) if only is not None else None, seed=seed)
    for mutant, code in sorted(codes.items()):
        if only is not None and mutant not in only:
            continue
        out.total += 1
        if mutant in EQUIVALENT:
            out.equivalent.append(mutant)
        elif code in KILLED:
            out.killed += 1
        elif code in TIMEOUT:
            out.timeout += 1
        elif code in SURVIVED:
            out.survived.append(mutant)
        elif code in NO_TESTS:
            out.no_tests.append(mutant)
        else:
            out.other.append(f"{mutant} (exit {code})")
    return out


def run_module(name: str, args: argparse.Namespace) -> Score:
    module = MODULES[name]
    work = Path(args.work_dir) / name
    stem = module.path[:-3].replace("/", ".")
    sample_file = work / "sample.json"
    sample: list[str] | None = None
    seed: int | None = None
    if args.retest:
        # tests were added since the last run of this module (the *_mutants.py files):
        # bring them over and test again only what that run left alive, same scope; the
        # rest of the copy stays as it was, so it stays consistent with its engine/
        for path in (ROOT / "tests").rglob("*_mutants.py"):
            dest = work / path.relative_to(ROOT)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)
        write_config(module, work)
        if sample_file.exists():
            saved = json.loads(sample_file.read_text())
            sample, seed = saved["names"], saved["seed"]
        verdicts = work / "verdicts.json"
        previous = json.loads(verdicts.read_text()) if verdicts.exists() else results(work, module)
        redo = [m for m, code in previous.items()
                if (sample is None or m in sample) and code not in KILLED | TIMEOUT
                and m not in EQUIVALENT]
        rc = mutmut(work, "run", "--max-children", str(args.jobs), *redo) if redo else 0
        # a new test selection makes mutmut forget its verdicts; tests were only added,
        # so a mutant killed before stays killed: keep those verdicts
        now = results(work, module)
        codes = {m: (now.get(m) if m in redo else code) for m, code in previous.items()}
    elif args.sample:
        prepare(module, work)
        # generate the mutants and the test map first (testing each function's first
        # mutant on the way), then test only the drawn ones
        mutmut(work, "run", "--max-children", str(args.jobs), f"{stem}.*__mutmut_1")
        names = sorted(results(work, module))
        sample = sorted(random.Random(args.seed).sample(names, min(args.sample, len(names))))
        seed = args.seed
        sample_file.write_text(json.dumps({"seed": seed, "names": sample}))
        rc = mutmut(work, "run", "--max-children", str(args.jobs), *sample)
    else:
        prepare(module, work)
        rc = mutmut(work, "run", "--max-children", str(args.jobs), f"{stem}.*")
    if rc not in (0, 1):
        print(f"mutmut exited {rc} for {module.path}", file=sys.stderr)
    if not args.retest:
        codes = results(work, module)
    (work / "verdicts.json").write_text(json.dumps(codes))
    result = score(name, module, codes, sample, seed)
    if args.survivors:
        for mutant in result.survived + result.no_tests:
            mutmut(work, "show", mutant)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--module", action="append", choices=list(MODULES),
                   help="a module to mutate (repeatable; default: all, one at a time)")
    p.add_argument("--sample", type=int, default=0, help="test N mutants drawn at random")
    p.add_argument("--seed", type=int, default=1, help="the seed of --sample")
    p.add_argument("--jobs", type=int, default=1, help="mutants tested at once (default 1)")
    p.add_argument("--work-dir", default=str(Path(tempfile.gettempdir()) / "byod-mutation"),
                   help="where the scratch copies go (default: byod-mutation in the system's "
                        "temporary directory)")
    p.add_argument("--retest", action="store_true",
                   help="after adding tests: re-test only the mutants the last run of the "
                        "module left alive (same scope, same scratch copy)")
    p.add_argument("--survivors", action="store_true", help="print each survivor's diff")
    p.add_argument("--fail-under", type=float, default=90.0)
    p.add_argument("--json", action="store_true", help="print the scores as JSON")
    args = p.parse_args(argv)
    if shutil.which("mutmut", path=str(Path(sys.executable).parent)) is None:
        print("mutmut is not installed: pip install -e '.[mutation]'", file=sys.stderr)
        return 2
    scores = [run_module(name, args) for name in (args.module or list(MODULES))]
    killed = sum(s.killed + s.timeout for s in scores)
    counted = sum(s.counted for s in scores)
    print("\nmutation score (killed / mutants less equivalent ones):")
    for s in scores:
        print("  " + s.line())
        for mutant in s.survived + s.no_tests + s.other:
            print(f"      survived: {mutant}")
        for mutant in s.equivalent:
            print(f"      equivalent: {mutant}: {EQUIVALENT[mutant]}")
    total = 100.0 * killed / counted if counted else 100.0
    print(f"  total      {total:5.1f}%  killed {killed}/{counted}")
    if args.json:
        print(json.dumps([{**s.__dict__, "percent": round(s.percent, 1)} for s in scores],
                         indent=2))
    return 0 if all(s.percent >= args.fail_under for s in scores) else 1


if __name__ == "__main__":
    sys.exit(main())
