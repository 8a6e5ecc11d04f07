"""Realistic generated trajectories: demo data for `make run` and input for the benchmarks.

Shaped like GRPO training output: several runs and agents; per iteration a set of questions
(data_id) each sampled `group_size` times; tool-calling steps with observations; rewards that
improve with the iteration; failure categories with root causes. About 8 KB per trajectory.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import orjson

RUNS = (
    ("grpo-qwen2.5-7b-math", "qwen2.5-7b-instruct"),
    ("grpo-llama3.1-8b-tools", "llama3.1-8b-instruct"),
    ("ppo-qwen2.5-14b-swe", "qwen2.5-14b-coder"),
)
TOOLS = {
    "python": lambda r: {"code": f"import math\nx = {r.randint(2, 999)}\nprint(math.sqrt(x) * {r.random():.4f})"},
    "search": lambda r: {"query": r.choice(_TOPICS), "top_k": r.choice((3, 5, 10))},
    "read_file": lambda r: {"path": f"src/{r.choice(_MODULES)}.py", "start": r.randint(1, 400)},
    "bash": lambda r: {"command": r.choice(("pytest -x -q", "ls -la", "git diff", "grep -rn TODO src"))},
    "calculator": lambda r: {"expression": f"{r.randint(1, 99)} * {r.randint(1, 99)} + {r.randint(1, 9)}"},
}
FAILURES = {
    "wrong_tool": "called {tool} where the task needed a different tool",
    "bad_arguments": "passed malformed arguments to {tool}",
    "hallucination": "answered with a value that no observation supported",
    "timeout": "ran out of steps before answering",
    "format_error": "final answer did not follow the required format",
    "gave_up": "stopped after {tool} returned an error",
}
_TOPICS = (
    "binomial coefficient identities",
    "python asyncio cancellation",
    "GRPO advantage normalisation",
    "flight change policy",
    "sqlite WAL mode",
    "prime factorisation",
    "unit conversion",
    "regex lookahead",
)
_MODULES = ("parser", "models", "utils", "cli", "server", "config", "tokenizer", "scheduler")
_WORDS = (
    "the",
    "value",
    "result",
    "function",
    "returns",
    "error",
    "check",
    "then",
    "compute",
    "we",
    "step",
    "answer",
    "because",
    "file",
    "test",
    "input",
    "output",
    "so",
    "next",
    "call",
    "tool",
    "number",
)


# A quarter of the questions are asked in Chinese, as many of our users write them.
_CHINESE = (
    "请计算二项式系数之和，并说明推导过程。",
    "用工具读取配置文件，找出导致超时的参数。",
    "模型回答错误时，请先检查工具返回的结果。",
    "把温度从华氏度换算成摄氏度，保留两位小数。",
    "修复解析器中的正则表达式，使测试通过。",
)
_ERRORS = (
    "Traceback (most recent call last):\n  File \"main.py\", line 12, in <module>\nKeyError: 'answer'",
    "bash: ./run.sh: Permission denied",
    "PermissionError: [Errno 13] Permission denied: '/data/cache'",
    "错误：权限不足，无法写入 /data/cache",
    "TimeoutError: tool call exceeded 30 s",
)


def _question(question: int, sentence: str) -> str:
    if question % 4 == 0:
        return f"问题 {question}：{_CHINESE[question // 4 % len(_CHINESE)]}{sentence[:80]}"
    return f"Question {question}: {sentence}"


@dataclass(frozen=True)
class DemoShape:
    count: int
    group_size: int = 8
    questions_per_iteration: int = 16
    seed: int = 7


def generate(shape: DemoShape) -> Iterator[dict]:
    rng = random.Random(shape.seed)
    texts = _TextPool(rng)
    made = 0
    iteration = 0
    while made < shape.count:
        for run_index, (training_id, agent_name) in enumerate(RUNS):
            questions = rng.sample(range(5000), shape.questions_per_iteration)
            for question in questions:
                difficulty = (question % 10) / 10
                for sample in range(shape.group_size):
                    if made >= shape.count:
                        return
                    yield _trajectory(
                        rng, texts, training_id, agent_name, run_index, iteration, question, sample, difficulty
                    )
                    made += 1
        iteration += 1


def write_jsonl(stream: BinaryIO, shape: DemoShape) -> int:
    written = 0
    for record in generate(shape):
        stream.write(orjson.dumps(record) + b"\n")
        written += 1
    return written


def _trajectory(rng, texts, training_id, agent_name, run_index, iteration, question, sample, difficulty) -> dict:
    progress = iteration / (iteration + 25)  # fast early learning, then a plateau
    success = rng.random() < 0.15 + 0.7 * progress * (1 - 0.6 * difficulty)
    tool_names = rng.sample(sorted(TOOLS), k=rng.randint(1, 3))
    turns = rng.randint(2, 6)
    steps = [
        {"role": "system", "content": texts.system[run_index]},
        {"role": "user", "content": _question(question, texts.sentence(30))},
    ]
    for turn in range(turns):
        tool = rng.choice(tool_names)
        call_id = f"call_{iteration}_{question}_{sample}_{turn}"
        steps.append(
            {
                "role": "assistant",
                "content": texts.sentence(25),
                "tool_calls": [{"id": call_id, "name": tool, "arguments": TOOLS[tool](rng)}],
            }
        )
        steps.append({"role": "tool", "tool_call_id": call_id, "name": tool, "content": texts.observation()})
    if not success and (question + sample) % 3 == 0:
        # Failed rollouts often end on an environment error: what content search is for.
        steps[-1] = {**steps[-1], "content": steps[-1]["content"] + "\n" + _ERRORS[(question + sample) % len(_ERRORS)]}
    steps.append({"role": "assistant", "content": f"The answer is {rng.randint(0, 10000)}. " + texts.sentence(20)})
    epoch = iteration // 100
    record = {
        "trajectory_id": f"{training_id}:e{epoch}:i{iteration}:q{question}:s{sample}",
        "data_id": f"q{question:05d}",
        "training_id": training_id,
        "agent_name": agent_name,
        "epoch_id": epoch,
        "iteration_id": iteration,
        "sample_id": sample,
        "reward": round(1.0 if success else rng.random() * 0.3, 4),
        "toolcall_reward": round(rng.random() * (0.5 + 0.5 * success), 4),
        "res_reward": 1.0 if success else 0.0,
        "exec_time": round(rng.uniform(1.0, 8.0) * turns, 3),
        "steps": steps,
        "created_at": 1_767_225_600 + iteration * 600 + run_index * 60 + sample,
        "analysis": _analysis(rng, success, tool_names[0]),
        "sampling": {"temperature": 1.0, "top_p": 0.95},
    }
    if rng.random() < 0.02:
        record["is_bookmarked"] = True
    return record


def _analysis(rng, success: bool, tool: str) -> dict:
    if success:
        return {"is_success": True, "category": "correct", "root_cause": ""}
    category = rng.choice(sorted(FAILURES))
    return {"is_success": False, "category": category, "root_cause": FAILURES[category].format(tool=tool)}


class _TextPool:
    """Pre-made text so generation is fast: random words are slow at a million records."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self.system = [
            f"You are {agent}, an agent trained in {run}. " + " ".join(rng.choice(_WORDS) for _ in range(180))
            for run, agent in RUNS
        ]
        self._sentences = [" ".join(rng.choice(_WORDS) for _ in range(60)).capitalize() + "." for _ in range(400)]
        self._observations = [self._observation() for _ in range(400)]

    def sentence(self, words: int) -> str:
        return self._rng.choice(self._sentences)[: words * 6]

    def observation(self) -> str:
        return self._rng.choice(self._observations)

    def _observation(self) -> str:
        lines = [
            f"{index:4d}: " + " ".join(self._rng.choice(_WORDS) for _ in range(12))
            for index in range(self._rng.randint(5, 28))
        ]
        return "\n".join(lines)
