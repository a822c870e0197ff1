"""Seed program for circle packing: 26 circles on five staggered rows, radii as large as the centres allow.

The layout is parametric: the numeric constants below (margins, stagger, row spacing) decide where the centres
go; `largest_radii` then gives every circle the largest radius that keeps the packing valid.
"""

import numpy as np

N_CIRCLES = 26
ROW_COUNTS = (5, 5, 6, 5, 5)  # circles per row, bottom to top (sums to 26)
MARGIN_X = 0.30  # distance from the left/right walls to the outermost centres
MARGIN_Y = 0.30  # distance from the bottom/top walls to the first/last row
ROW_STAGGER = 0.05  # horizontal shift of every other row
ROW_BULGE = 0.0  # extra vertical spacing between the middle rows
GROW_PASSES = 4  # passes growing radii into free space


def row_centres() -> np.ndarray:
    """Centres of the circles, row by row, from the layout constants."""
    n_rows = len(ROW_COUNTS)
    heights = np.linspace(MARGIN_Y, 1.0 - MARGIN_Y, n_rows)
    heights = heights + ROW_BULGE * np.sin(np.linspace(-np.pi / 2, np.pi / 2, n_rows))
    centres = []
    for row, (count, y) in enumerate(zip(ROW_COUNTS, heights, strict=True)):
        xs = np.linspace(MARGIN_X, 1.0 - MARGIN_X, count)
        shift = ROW_STAGGER if row % 2 else -ROW_STAGGER
        centres.extend((x + shift, y) for x in xs)
    return np.clip(np.array(centres, dtype=float), 0.0, 1.0)


def largest_radii(centres: np.ndarray) -> np.ndarray:
    """Radii keeping every circle in the square and apart from the others, grown greedily into free space."""
    walls = np.minimum(centres, 1.0 - centres).min(axis=1)
    gaps = np.linalg.norm(centres[:, None, :] - centres[None, :, :], axis=2)
    np.fill_diagonal(gaps, np.inf)
    radii = np.minimum(walls, gaps.min(axis=1) / 2.0)
    for _ in range(GROW_PASSES):
        for i in range(len(radii)):
            room = gaps[i] - radii
            room[i] = np.inf
            radii[i] = max(0.0, min(walls[i], room.min()))
    return radii * (1.0 - 1e-12)


def construct_packing() -> tuple[np.ndarray, np.ndarray]:
    """Return (centres, radii): 26 (x, y) points in the unit square and 26 radii."""
    centres = row_centres()
    assert len(centres) == N_CIRCLES
    return centres, largest_radii(centres)


if __name__ == "__main__":
    c, r = construct_packing()
    print(f"sum of radii: {r.sum():.6f}")
