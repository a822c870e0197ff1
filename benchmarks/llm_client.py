"""The OpenAI-compatible client's own CPU per chat-completion request: sequential requests with a 3 KB prompt to the
fake server running in another process (so the CPU measured here is the client's and its event loop's alone).

    .venv/bin/python benchmarks/llm_client.py [--requests 2000] [--rounds 5] [--prompt-bytes 3000]

Prints the CPU of each round and `RESULT cpu_ms_per_request=...` (the median round's).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SERVER = """import sys
sys.path.insert(0, sys.argv[1])
from fake_llm import FakeLLM
with FakeLLM(default="ok " * 40) as fake:
    print(fake.base_url, flush=True)
    sys.stdin.read()  # until the benchmark closes the pipe
"""


async def rounds(base_url: str, requests: int, count: int, prompt_bytes: int) -> list[float]:
    """CPU milliseconds per request of each round (after a warm-up round), one client and loop throughout."""
    from evoforge.config import LLMSettings
    from evoforge.llm import LLMClient

    client = LLMClient(model="fake-model", base_url=base_url, api_key=None, settings=LLMSettings())
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "x" * prompt_bytes}]
    results: list[float] = []
    try:
        for number in range(count + 1):
            start = time.process_time()
            for _ in range(requests):
                await client.complete(messages, role="researcher")
            if number:  # the first round warms up (imports, the connection, caches)
                results.append((time.process_time() - start) * 1000 / requests)
    finally:
        await client.aclose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--prompt-bytes", type=int, default=3000)
    args = parser.parse_args()
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(ROOT / "tests")], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        base_url = server.stdout.readline().strip()
        if not base_url:
            raise SystemExit("the fake server did not start")
        per_round = asyncio.run(rounds(base_url, args.requests, args.rounds, args.prompt_bytes))
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(timeout=30)
    print("rounds (CPU ms per request): " + " ".join(f"{value:.3f}" for value in per_round))
    print(f"RESULT cpu_ms_per_request={statistics.median(per_round):.3f}")


if __name__ == "__main__":
    main()
