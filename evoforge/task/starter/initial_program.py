"""Seed program for the starter task: returns a point (x, y) built from tunable constants."""

X_START = 0.5
Y_START = 0.5
STEP = 0.1


def solve() -> dict:
    """Return the point to score."""
    return {"x": X_START + STEP, "y": Y_START - STEP}


if __name__ == "__main__":
    print(solve())
