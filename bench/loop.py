"""Closed-loop benchmark: the real server (uvicorn) and worker (subprocesses), simulated annotators over the
JSON API, R rounds of rank → reward model → policy → sample → score. Does the loop improve the policy?

Prompts are chunks of the shared InstructGPT TL;DR posts, uploaded ONCE without completions (a fixed pool of
--pool prompts, default one round's worth): each round the loop plans --prompts prompts from the whole pool
(never-ranked first, then uncertain, then disputed by annotators, then least recently sampled; never a
test-set prompt; app.loop.planning) and samples K new candidates for each from the round's policies side by
side (the new candidate K-2, the active policy 1, the SFT version 1; round 0: the base policy, which is the
SFT version). The simulated annotators apply a planted preference, more whitespace-separated words is better
(ties share a rank; with probability --noise an annotator miscounts a candidate by one word). It is computable
on any text, a tiny reward model can learn it from a few hundred rankings, and plain RL on a tiny random
policy drifts the other way (towards shorter text), so a gain comes from the reward model. One JSON line per
round: round, comparisons (what the reward model trained on), rm_version, rm_heldout_accuracy (on the
project's fixed test set), rm_test_set_version, rm_test_accuracy and rm_test_ece (the new RM's pairwise
accuracy and calibration error on that test-set version; the test set is a quarter of the ranked prompts, held
out of training and of sampling, grown only by appending), rm_test_pairs, active_rm_test_accuracy (the RM
active before, on the same version), policy_version, win_rate_vs_previous (share of held-out prompts, from
held-out posts, where the new policy's --win-samples samples have more words on average than the previous
active policy's; a tie counts half), win_rate_vs_sft (the same against the SFT version),
words_new/words_previous, kl_to_sft (sequence KL to the frozen SFT reference on the project's held-out
prompts), kl_budget, kl_coef (the round's KL coefficient, from the KL schedule), policy_promotion (the new
policy's promotion state: provisional until people decide),
human_confirmed / human_verdict (what this round's human rankings decided about the previous round's promoted
policy: the Bradley-Terry check of app/loop/promotion.py), and what the round's sampling did for the next one:
sampled_prompts, resampled_prompts (of those, prompts that had candidates already), versions_per_task,
sample_reasons (prompts per planning tier); seconds.

    python bench/loop.py --quick          # tiny CPU models, under five minutes
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402

TLDR = REPO.parent / "shared" / "data" / "instructgpt-samples" / "tldr_samples.csv"
PASSWORD = "bench password long enough"


def preference(text: str) -> int:
    """The planted preference: more whitespace-separated words is better."""
    return len(text.split())


def rank(completions: list[dict[str, Any]], noise: float, rng: random.Random) -> dict[str, Any]:
    """One annotator's submission: dense ranks by (perceived) word count, ties equal; not rankable when all tie."""
    seen = {c["id"]: preference(c["text"]) + (rng.choice((-1, 1)) if rng.random() < noise else 0)
            for c in completions}
    values = sorted(set(seen.values()), reverse=True)
    return {"ranks": {str(cid): values.index(v) + 1 for cid, v in seen.items()}, "not_rankable": len(values) < 2}


def load_prompts(n_train: int, n_heldout: int, chars: int, seed: int) -> tuple[list[str], list[str]]:
    """TL;DR posts cut into consecutive chunks of about `chars` characters, each ending with "TL;DR:".

    Held-out prompts come from posts that give no training prompt, so the win rate is measured on unseen text.
    """
    posts: set[str] = set()
    with TLDR.open(newline="", encoding="utf-8") as fh:
        posts.update(row["context"] for row in csv.DictReader(fh))
    ordered = sorted(posts)
    random.Random(seed).shuffle(ordered)

    def chunks(post: str) -> list[str]:
        body = post.removesuffix("TL;DR:").split()
        out, cur = [], ""
        for word in body:
            cur = f"{cur} {word}" if cur else word
            if len(cur) >= chars:
                out.append(cur + "\nTL;DR:")
                cur = ""
        return out

    heldout = [c for post in ordered[:n_heldout] for c in chunks(post)[-1:]]
    train = [c for post in ordered[n_heldout:] for c in chunks(post)]
    random.Random(seed + 1).shuffle(train)
    if len(train) < n_train or len(heldout) < n_heldout:
        raise SystemExit(f"the TL;DR sample has {len(train)} training chunks of {chars} characters; asked {n_train}")
    return train[:n_train], heldout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def setup(args: argparse.Namespace, env: dict[str, str], work: Path) -> dict[str, Any]:
    """Migrate, create users/tokens/project, tiny models and every round's prompts (in-process, same DB)."""
    from app.auth import service as auth
    from app.db import create_db_engine, make_session_factory, unit_of_work
    from app.migrate import upgrade
    from app.models import Prompt
    from app.projects import service as projects
    from app.projects.schemas import ProjectCreate
    from worker.training.tiny import init_tiny

    train, heldout = load_prompts(args.pool, args.heldout, args.context_chars, args.seed)
    models = init_tiny(work / "models", train + heldout, seed=args.seed, vocab_size=args.vocab)
    upgrade(env["PREFLOOP_DATABASE_URL"])
    engine = create_db_engine(env["PREFLOOP_DATABASE_URL"])
    # Only settings values: the same handlers and promotion rules as any project.
    settings = {
        "sampling": {"k": args.k, "max_new_tokens": args.max_new_tokens, "temperature": 1.0, "top_p": 1.0,
                     "seed": args.seed},
        "training": {"policy_model": str(models["policy"]), "reward_model": str(models["reward"]),
                     "algorithm": args.algorithm, "rm_epochs": args.rm_epochs, "rm_lr": 1e-3, "rm_batch_prompts": 4,
                     "rm_heldout_fraction": 0.25, "policy_lr": args.policy_lr, "policy_steps": args.policy_steps,
                     "policy_batch_prompts": 8, "rloo_k": 4, "kl_budget": args.kl_budget, "kl_beta": args.kl_beta,
                     "kl_schedule": args.kl_schedule, "rm_accuracy_tolerance": args.rm_accuracy_tolerance},
        "schedule": {"enabled": False, "retrain_every": 1, "prompts_per_round": args.prompts},
    }
    with unit_of_work(make_session_factory(engine)) as db:
        admin = auth.create_user(db, "admin@bench.local", "admin", password=PASSWORD).user
        annotators = [auth.create_user(db, f"a{i}@bench.local", "annotator", password=PASSWORD).user
                      for i in range(args.annotators)]
        project = projects.create(db, ProjectCreate(name="bench loop", k_min=2, k_max=args.k, settings=settings),
                                  admin)
        db.add_all(Prompt(project_id=project.id, external_id=f"tldr-{i}", text=text, content_hash=f"{i:064x}")
                   for i, text in enumerate(train))
        db.flush()
        tokens = {"admin": auth.create_api_token(db, admin, "bench"),
                  "annotators": [auth.create_api_token(db, a, "bench") for a in annotators]}
        project_id = project.id
    engine.dispose()
    return {"project_id": project_id, "tokens": tokens, "heldout": heldout, "models": models}


def annotate(client: httpx.Client, project_id: int, tokens: list[str], args: argparse.Namespace,
             rng: random.Random) -> int:
    """Every annotator takes tasks until none is left; returns rankings submitted."""
    submitted = 0
    active = list(tokens)
    while active:
        for token in list(active):
            headers = {"Authorization": f"Bearer {token}"}
            response = client.get(f"/api/projects/{project_id}/tasks/next", headers=headers)
            if response.status_code == 204:
                active.remove(token)
                continue
            response.raise_for_status()
            task = response.json()
            body = rank(task["completions"], args.noise, rng)
            saved = client.post(f"/api/assignments/{task['assignment_id']}/ranking", json=body, headers=headers)
            saved.raise_for_status()
            submitted += 1
    return submitted


def wait_chain(client: httpx.Client, project_id: int, headers: dict[str, str], first_job: int,
               timeout: float) -> dict[str, Any]:
    """Wait until the chain started by `first_job` (RM → policy → sample → score) has finished or failed;
    returns the sampling job's result."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = client.get(f"/api/projects/{project_id}/jobs", headers=headers).json()
        mine = [j for j in jobs if j["id"] >= first_job]
        failed = [j for j in mine if j["status"] in ("failed", "cancelled")]
        if failed:
            raise RuntimeError(f"job {failed[0]['id']} ({failed[0]['kind']}) {failed[0]['status']}: {failed[0]['error']}")
        sampled = [j for j in mine if j["kind"] == "sample_completions" and j["status"] == "succeeded"]
        if sampled and all(j["status"] == "succeeded" for j in mine):
            return dict(sampled[0]["result"] or {})
        time.sleep(0.5)
    raise TimeoutError("the loop did not finish in time")


def sampling_line(result: dict[str, Any]) -> dict[str, Any]:
    """What a round's sampling did: prompts sampled, of them resampled, policy versions per task, and why
    the prompts were chosen (planning tiers: never_ranked, uncertain, disputed, least_recent)."""
    return {"sampled_prompts": result.get("prompts", 0), "resampled_prompts": result.get("resampled_prompts", 0),
            "versions_per_task": len(result.get("versions") or {}) if result.get("prompts") else 0,
            "sample_reasons": result.get("reasons") or {}}


def win_rate(new_path: str, old_path: str, prompts: list[str], args: argparse.Namespace,
             sft_path: str = "") -> dict[str, float]:
    """Share of held-out prompts where the new policy's samples have more words on average than the previous
    policy's (same sampling seed, --win-samples each; ties count half), the same against the SFT version,
    and the new and previous policies' mean word counts."""
    from worker.training.sampling import load_policy, sample_completions

    def mean_words(path: str) -> list[float]:
        model, tokenizer = load_policy(path, device="cpu")
        outs = sample_completions(model, tokenizer, prompts, args.win_samples, max_new_tokens=args.max_new_tokens,
                                  seed=args.seed + 1)
        return [sum(preference(t) for t in texts) / len(texts) for texts in outs]

    def wins(a: list[float], b: list[float]) -> float:
        return sum(1.0 if x > y else 0.5 if x == y else 0.0 for x, y in zip(a, b, strict=True)) / max(len(a), 1)

    new, old = mean_words(new_path), mean_words(old_path)
    sft = mean_words(sft_path) if sft_path and sft_path != old_path else old
    n = max(len(prompts), 1)
    return {"win_rate_vs_previous": wins(new, old), "win_rate_vs_sft": wins(new, sft), "words_new": sum(new) / n,
            "words_previous": sum(old) / n}


def run(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="prefloop-bench-loop-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFLOOP_")}
    env.update(PREFLOOP_ENV="test", PREFLOOP_DATA_DIR=str(work / "data"), PREFLOOP_SECRET_KEY="bench-" + "s" * 40,
               PREFLOOP_DATABASE_URL=args.database_url or f"sqlite:///{work / 'data' / 'loop.db'}",
               PREFLOOP_LOG_LEVEL="warning", OMP_NUM_THREADS=str(args.threads))
    (work / "data").mkdir(parents=True)
    os.environ.update({k: v for k, v in env.items() if k.startswith("PREFLOOP_")})
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    torch.set_num_threads(args.threads)
    ctx = setup(args, env, work)
    port = free_port()
    logs = (work / "server.log").open("wb"), (work / "worker.log").open("wb")
    server = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--port", str(port)], cwd=REPO, env=env,
                              stdout=logs[0], stderr=subprocess.STDOUT)
    worker = subprocess.Popen([sys.executable, "-m", "worker", "--poll-seconds", "0.5", "--heartbeat-seconds", "2"],
                              cwd=REPO, env=env, stdout=logs[1], stderr=subprocess.STDOUT)
    rng = random.Random(args.seed)
    admin = {"Authorization": f"Bearer {ctx['tokens']['admin']}"}
    pid = ctx["project_id"]
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if client.get("/readyz").status_code < 500:
                        break
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise
                time.sleep(0.2)
            first = client.post(f"/api/projects/{pid}/loop/run", headers=admin)  # round 0: the base policy samples
            first.raise_for_status()
            sampled = wait_chain(client, pid, admin, first.json()["id"], args.timeout)
            print(json.dumps({"round": 0, "pool": args.pool, **sampling_line(sampled)}), flush=True)
            previous_policy: int | None = None
            for round_number in range(1, args.rounds + 1):
                t0 = time.monotonic()
                rankings = annotate(client, pid, ctx["tokens"]["annotators"], args, rng)
                before = {v["id"] for v in client.get(f"/api/projects/{pid}/models", headers=admin).json()}
                started = client.post(f"/api/projects/{pid}/loop/run", headers=admin)
                started.raise_for_status()
                sampled = wait_chain(client, pid, admin, started.json()["id"], args.timeout)
                versions = client.get(f"/api/projects/{pid}/models", headers=admin).json()
                new = [v for v in versions if v["id"] not in before]
                rm = next(v for v in new if v["kind"] == "reward")
                policy = next(v for v in new if v["kind"] == "policy")
                parent = next(v for v in versions if v["id"] == policy["parent_id"])
                # What people's rankings of this round decided about the previous round's promoted policy.
                judged = next((v for v in versions if v["id"] == previous_policy), None)
                previous_policy = policy["id"] if policy["status"] == "active" else previous_policy
                line = {
                    "round": round_number, "rankings": rankings, "comparisons": rm["comparisons"],
                    "rm_version": rm["name"], "rm_status": rm["status"],
                    "rm_heldout_accuracy": rm["metrics"].get("heldout_accuracy"),
                    # The fixed test set: its version, the new RM's accuracy and calibration error on it, and
                    # the RM active before, re-scored on the same version (like for like).
                    "rm_test_set_version": rm.get("test_set_version"), "rm_test_accuracy": rm.get("test_accuracy"),
                    "rm_test_ece": rm.get("test_ece"), "rm_test_pairs": rm.get("test_pairs"),
                    "active_rm_test_accuracy": rm["metrics"].get("active_test_accuracy"),
                    "policy_version": policy["name"], "policy_status": policy["status"],
                    "policy_parent": parent["name"],
                    **win_rate(policy["checkpoint_path"], parent["checkpoint_path"], ctx["heldout"], args,
                               sft_path=str(ctx["models"]["policy"])),
                    "kl_to_sft": policy["metrics"].get("kl"), "reference_version": policy["metrics"].get("reference_version"),
                    "kl_budget": args.kl_budget, "kl_coef": policy["training_config"].get("kl_coef"),
                    "reward_before": policy["metrics"].get("reward_before"),
                    "reward_after": policy["metrics"].get("reward_after"),
                    "policy_promotion": policy.get("promotion_state"),
                    "human_confirmed": None if judged is None else judged.get("promotion_state") == "confirmed",
                    "human_verdict": None if judged is None else judged.get("promotion_reason") or None,
                    **sampling_line(sampled),
                    "seconds": round(time.monotonic() - t0, 1),
                }
                print(json.dumps(line), flush=True)
    finally:
        for proc in (worker, server):
            proc.terminate()
        for proc in (worker, server):
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        for fh in logs:
            fh.close()
        print(json.dumps({"work_dir": str(work)}), file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny CPU run (under five minutes)")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--prompts", type=int, default=None, help="prompts per round")
    parser.add_argument("--pool", type=int, default=None, help="prompts uploaded once (default: --prompts)")
    parser.add_argument("--heldout", type=int, default=None, help="held-out prompts for the win rate")
    parser.add_argument("--k", type=int, default=8, help="candidates per prompt (28 comparisons per ranking)")
    parser.add_argument("--annotators", type=int, default=3)
    parser.add_argument("--noise", type=float, default=0.1, help="chance an annotator miscounts a candidate by one")
    parser.add_argument("--algorithm", choices=("ppo", "rloo", "dpo"), default="rloo")
    parser.add_argument("--policy-steps", type=int, default=None)
    parser.add_argument("--policy-lr", type=float, default=1e-3)
    parser.add_argument("--kl-beta", type=float, default=0.1)
    parser.add_argument("--kl-schedule", choices=("adaptive", "fixed"), default="adaptive",
                        help="training.kl_schedule: each round's KL coefficient from the last round's KL, or kl_beta")
    parser.add_argument("--kl-budget", type=float, default=10.0, help="nats per completion (training.kl_budget)")
    parser.add_argument("--rm-epochs", type=int, default=8)
    parser.add_argument("--rm-accuracy-tolerance", type=float, default=0.05,
                        help="a new reward model is promoted unless this much less accurate than the active one")
    parser.add_argument("--max-new-tokens", type=int, default=12)
    parser.add_argument("--context-chars", type=int, default=160, help="characters per TL;DR chunk (prompt)")
    parser.add_argument("--vocab", type=int, default=384, help="tiny tokenizer vocabulary")
    parser.add_argument("--win-samples", type=int, default=4, help="samples per held-out prompt and policy")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--database-url", default="", help="default: a fresh SQLite file")
    args = parser.parse_args()
    quick = {"rounds": 3, "prompts": 96, "heldout": 32, "policy_steps": 40}
    full = {"rounds": 4, "prompts": 96, "heldout": 32, "policy_steps": 60}  # 100 TL;DR posts in all
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.pool is None:
        args.pool = args.prompts
    run(args)


if __name__ == "__main__":
    main()
