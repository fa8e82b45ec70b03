"""The lectures' small worlds as gymnasium environments, registered on import under the
bundle's own ids: the short corridor with switched actions, the aliased grid world, the grid
with stars.

    import zoo.worlds  # registers ShortCorridor-v0, AliasedGridWorld-v0, StarGrid-v0
    env = gym.make("StarGrid-v0", render_mode="rgb_array")

Each world is finite and exposes its exact model the way gymnasium's toy-text environments
(FrozenLake, CliffWalking) do, so zoo/tabular.py's value iteration runs on it:
`env.unwrapped.P[s][a] = [(probability, next_state, reward, terminated), ...]` over the
world's true states (terminal states absorb with reward 0), and
`env.unwrapped.initial_state_distrib[s]`. What the agent observes is another matter:
`env.unwrapped.observe(s)` is the observation of state s, and in the first two worlds
different states look the same. `render_mode` "rgb_array" draws the grid (the agent as a
blue disc), "ansi" prints it. Time limits come from the registrations (TimeLimit), so
every episode ends.
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np

Transition = tuple[float, int, float, bool]
MOVES = {0: (-1, 0), 1: (0, 1), 2: (1, 0), 3: (0, -1)}  # N, E, S, W as (row, column) steps
CELL = 24  # pixels a side in rgb_array frames
COLOURS = {".": (255, 255, 255), "S": (255, 255, 255), "g": (160, 160, 160), "#": (64, 64, 64), " ": (0, 0, 0),
           "*": (250, 200, 30), "$": (60, 170, 60), "X": (200, 40, 40), "G": (60, 170, 60), "<": (250, 170, 120)}


class TabularWorld(gym.Env):
    """A finite world given by its model; subclasses set `P`, `initial_state_distrib`, the
    spaces, `layout` (rows of characters, see COLOURS), `cells` (the (row, column) of each
    state in the layout) and `observe`."""

    metadata = {"render_modes": ["rgb_array", "ansi"], "render_fps": 4}
    P: dict[int, dict[int, list[Transition]]]
    initial_state_distrib: np.ndarray
    layout: list[str]
    cells: list[tuple[int, int]]

    def __init__(self, render_mode: str | None = None):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']}, got {render_mode!r}")
        self.render_mode = render_mode
        self.s = 0

    def observe(self, state: int):
        raise NotImplementedError

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """A start state drawn from initial_state_distrib, or options={"start": state}."""
        super().reset(seed=seed)
        if options and "start" in options:
            self.s = int(options["start"])
        else:
            self.s = int(self.np_random.choice(len(self.initial_state_distrib), p=self.initial_state_distrib))
        return self.observe(self.s), {"state": self.s}

    def step(self, action):
        transitions = self.P[self.s][int(action)]
        pick = 0 if len(transitions) == 1 else self.np_random.choice(len(transitions), p=[t[0] for t in transitions])
        _, self.s, reward, terminated = transitions[pick]
        return self.observe(self.s), float(reward), terminated, False, {"state": self.s}

    def render(self):
        if self.render_mode == "ansi":
            rows = [list(row) for row in self.layout]
            row, column = self.cells[self.s]
            rows[row][column] = "A"
            return "\n".join("".join(row) for row in rows) + "\n"
        if self.render_mode == "rgb_array":
            return self.frame()
        return None

    def frame(self) -> np.ndarray:
        """[rows * CELL, columns * CELL, 3] uint8: the layout's cells in COLOURS, the agent a blue disc."""
        height, width = len(self.layout), max(len(row) for row in self.layout)
        image = np.zeros((height * CELL, width * CELL, 3), np.uint8)
        for r, row in enumerate(self.layout):
            for c, code in enumerate(row):
                image[r * CELL:(r + 1) * CELL, c * CELL:(c + 1) * CELL] = COLOURS[code]
        image[::CELL], image[:, ::CELL] = 128, 128  # grid lines
        row, column = self.cells[self.s]
        y, x = np.mgrid[:CELL, :CELL] - (CELL - 1) / 2
        disc = y ** 2 + x ** 2 <= (CELL / 3) ** 2
        image[row * CELL:(row + 1) * CELL, column * CELL:(column + 1) * CELL][disc] = (40, 80, 220)
        return image


def grid_model(layout: list[str], rewards: dict[str, float], move_reward: float
               ) -> tuple[list[tuple[int, int]], dict[int, dict[int, list[Transition]]]]:
    """(cells, P) of a grid: every character but '#' and ' ' is a state (in reading order);
    the four moves N, E, S, W go to the neighbouring cell, or stay put against the edge, a '#'
    or a ' '. Entering a cell whose character is in `rewards` pays that and ends the episode;
    every other move pays `move_reward`."""
    cells = [(r, c) for r, row in enumerate(layout) for c, code in enumerate(row) if code not in "# "]
    index = {cell: s for s, cell in enumerate(cells)}
    model = {}
    for s, (r, c) in enumerate(cells):
        if layout[r][c] in rewards:  # terminal: absorbing, as gymnasium's toy-text worlds
            model[s] = {a: [(1.0, s, 0.0, True)] for a in MOVES}
            continue
        model[s] = {}
        for a, (dr, dc) in MOVES.items():
            s_next = index.get((r + dr, c + dc), s)
            code = layout[cells[s_next][0]][cells[s_next][1]]
            model[s][a] = [(1.0, s_next, rewards.get(code, move_reward), code in rewards)]
    return cells, model


class ShortCorridor(TabularWorld):
    """Sutton & Barto's short corridor with switched actions (Example 13.1):

        S < . G      states 0, 1, 2 and the goal 3; actions 0 = left, 1 = right

    Left in state 0 bumps into the wall (stays); in state 1 ('<') the actions are switched
    (right goes to 0, left to 2); reward -1 a step until the goal. The observation is [1.0] in
    every state, so a policy can only choose the probability p of "right", whose value is
    v(S) = (2p - 4) / (p (1 - p)), at best -(6 + 4 sqrt 2) = -11.66 at p = 2 - sqrt 2 = 0.586
    (tests/zoo/test_worlds.py derives it). Time limit 1,000 steps: the chance an episode
    would run longer is below 1e-6 for every p in [0.05, 0.95].
    """

    layout = ["S<.G"]
    cells = [(0, 0), (0, 1), (0, 2), (0, 3)]
    observation_space = gym.spaces.Box(0.0, 1.0, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, render_mode: str | None = None):
        super().__init__(render_mode)
        left, right = 0, 1
        self.P = {0: {left: [(1.0, 0, -1.0, False)], right: [(1.0, 1, -1.0, False)]},
                  1: {left: [(1.0, 2, -1.0, False)], right: [(1.0, 0, -1.0, False)]},  # switched
                  2: {left: [(1.0, 1, -1.0, False)], right: [(1.0, 3, -1.0, True)]},
                  3: {left: [(1.0, 3, 0.0, True)], right: [(1.0, 3, 0.0, True)]}}
        self.initial_state_distrib = np.array([1.0, 0.0, 0.0, 0.0])

    def observe(self, state: int) -> np.ndarray:
        return np.ones(1, np.float32)


class AliasedGridWorld(TabularWorld):
    """The aliased grid world of David Silver's policy-gradient lecture (Lecture 7):

        . g . g .     the agent starts in one of the five top cells, uniformly
        X # $ # X     X: a skull, $: the money, #: no cell (a wall)

    Actions 0-3 move N, E, S, W (into a wall or the edge: stay). The observation is which of
    the cell's four sides are walls, [N, E, S, W] as 0/1, so the two grey cells 'g' (walls N
    and S) look alike and every other top cell is told apart. Rewards: the move onto the
    money +10, onto a skull -100, every other move -1; both end the episode. Time limit 50
    steps: a skull costs more than wandering until the limit, so the best deterministic
    policy does what the lecture says, it gets stuck (going E in both grey cells traps the
    agent that starts right of the money between the right grey cell and the corner; W
    traps the left side). Moving E or W at random in the grey cells reaches the money from
    everywhere, in 3.8 moves on average.
    """

    layout = [".g.g.", "X#$#X"]
    observation_space = gym.spaces.Box(0.0, 1.0, (4,), np.float32)
    action_space = gym.spaces.Discrete(4)

    def __init__(self, render_mode: str | None = None):
        super().__init__(render_mode)
        self.cells, self.P = grid_model(self.layout, {"$": 10.0, "X": -100.0}, -1.0)
        self.initial_state_distrib = np.array([float(r == 0) for r, _ in self.cells]) / len(self.layout[0])

    def observe(self, state: int) -> np.ndarray:
        row, column = self.cells[state]
        height, width = len(self.layout), len(self.layout[0])

        def wall(dr, dc):
            r, c = row + dr, column + dc
            return not (0 <= r < height and 0 <= c < width) or self.layout[r][c] in "# "

        return np.array([wall(dr, dc) for dr, dc in MOVES.values()], np.float32)


class StarGrid(TabularWorld):
    """A grid where the agent walks to a star (the lectures' picture of a random and an
    optimal policy):

             0 1 2 3 4
          0  . . . . *      *: a star, #: a wall
          1  . # # . .
          2  . . . . #
          3  * # . . .
          4  . . . # .

    Actions 0-3 move N, E, S, W (into a wall or the edge: stay). Rewards: the move onto a
    star +10 (the episode ends), every other move -1. The observation is the state's index
    (Discrete, the free cells in reading order), so tabular methods see the true state.
    Episodes start in a free cell drawn uniformly (or options={"start": state}); time limit
    100 steps.
    """

    layout = ["....*", ".##..", "....#", "*#...", "...#."]
    action_space = gym.spaces.Discrete(4)

    def __init__(self, render_mode: str | None = None):
        super().__init__(render_mode)
        self.cells, self.P = grid_model(self.layout, {"*": 10.0}, -1.0)
        self.observation_space = gym.spaces.Discrete(len(self.cells))
        free = np.array([self.layout[r][c] == "." for r, c in self.cells], np.float64)
        self.initial_state_distrib = free / free.sum()

    def observe(self, state: int) -> int:
        return state

    def state_of(self, row: int, column: int) -> int:
        """The state index of a cell of the layout."""
        return self.cells.index((row, column))


REGISTRATIONS = {"ShortCorridor-v0": (ShortCorridor, 1_000),
                 "AliasedGridWorld-v0": (AliasedGridWorld, 50),
                 "StarGrid-v0": (StarGrid, 100)}
for _id, (_world, _limit) in REGISTRATIONS.items():
    if _id not in gym.registry:
        gym.register(id=_id, entry_point=f"{__name__}:{_world.__name__}", max_episode_steps=_limit)
