"""V* on a grid with the greedy arrows, beside a random and an optimal policy's episodes.

The lectures' tabular pictures, from value iteration or Q-learning:

    python -m training tabular --env StarGrid-v0 --method value_iteration --out runs/tabular-stars
    python -m training tabular --env StarGrid-v0 --method q_learning --out runs/tabular-stars-q
    python -m training tabular --preset frozen_lake --method value_iteration --out runs/tabular-lake

Works on any environment that exposes its model as gymnasium's toy-text ones do
(`env.unwrapped.P`) and lays its states out on a grid: the worlds of zoo/worlds.py,
FrozenLake-v1, CliffWalking-v1. `value_iteration` reads the model; `q_learning` learns from
episodes (its observations must be the states: Discrete) and is compared with value
iteration's optimum. Prints V (max_a Q for Q-learning) on the grid with the greedy action's
arrow in every cell; writes tabular.png (that grid, then one episode of a uniformly random
policy and one of the greedy policy from the same start, with their returns) and
metrics.json. The returns quoted are exact expectations over the start states and the
time limit (`zoo.tabular.evaluate_policy`), besides the drawn episodes' own.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

import gymnasium as gym
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from rundir import Run, UserError  # noqa: E402
from training.config import run_command  # noqa: E402
from training.envs import make_env  # noqa: E402
from zoo import worlds  # noqa: E402
from zoo.tabular import evaluate_policy, q_learning, value_iteration  # noqa: E402


@dataclasses.dataclass(frozen=True)
class TabularConfig:
    """A tabular method on a gridded environment, and the episodes drawn after it."""

    env: str = "StarGrid-v0"
    """Gymnasium id of an environment with a model (env.unwrapped.P) on a grid."""
    method: Literal["value_iteration", "q_learning"] = "value_iteration"
    """Value iteration on the model, or Q-learning from epsilon-greedy episodes."""
    gamma: float = 1.0
    """Discount factor (1: the lectures' undiscounted returns; below 1 where loops cost nothing)."""
    episodes: int = 3_000
    """Q-learning: training episodes."""
    alpha: float = 0.5
    """Q-learning: step size."""
    epsilon: float = 0.2
    """Q-learning: exploration rate."""
    seed: int = 0
    """Seed of Q-learning and of the drawn episodes' start and actions."""

    def __post_init__(self):
        if not 0 < self.gamma <= 1:
            raise ValueError(f"gamma must be in (0, 1], got {self.gamma}")
        for name in ("alpha", "epsilon"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.episodes < 1:
            raise ValueError(f"episodes must be at least 1, got {self.episodes}")


PRESETS = {
    "star_grid": TabularConfig,
    # The slippery lake: a fall in a hole costs nothing, so only discounting makes the optimal
    # policy hurry; Q-learning needs many more episodes than on the deterministic grid.
    "frozen_lake": lambda: TabularConfig(env="FrozenLake-v1", gamma=0.99, episodes=20_000, alpha=0.1, epsilon=0.1),
}

COLOURS = {**worlds.COLOURS, "F": (215, 235, 255), "H": (40, 70, 140), "C": (200, 40, 40)}  # FrozenLake, CliffWalking


@dataclasses.dataclass(frozen=True)
class Grid:
    """Where an environment's states sit: `layout` rows of characters, `cells[s]` = (row, column), `arrows[a]`."""

    layout: list[str]
    cells: list[tuple[int, int]]
    arrows: str


def grid_of(env: gym.Env, env_id: str) -> Grid:
    """The grid of the worlds, FrozenLake or CliffWalking; a UserError for other environments."""
    world = env.unwrapped
    if not hasattr(world, "P"):
        raise UserError(f"{env_id} exposes no model (env.unwrapped.P); the tabular command needs a toy-text "
                        f"environment such as StarGrid-v0 or FrozenLake-v1")
    if isinstance(world, worlds.TabularWorld):
        return Grid(world.layout, world.cells, world.arrows)
    if isinstance(world, gym.envs.toy_text.FrozenLakeEnv):
        layout = ["".join(code.decode() for code in row) for row in world.desc]
        return Grid(layout, [divmod(s, world.ncol) for s in range(world.nrow * world.ncol)], "←↓→↑")
    if isinstance(world, gym.envs.toy_text.CliffWalkingEnv):
        rows, columns = world.shape
        layout = ["." * columns] * (rows - 1) + ["S" + "C" * (columns - 2) + "G"]
        return Grid(layout, [divmod(s, columns) for s in range(rows * columns)], "↑→↓←")
    raise UserError(f"{env_id} has a model but no grid this command knows how to draw; expected one of "
                    f"{', '.join(worlds.REGISTRATIONS)}, FrozenLake-v1, CliffWalking-v1")


def ends(env: gym.Env) -> np.ndarray:
    """[S] bool: states no episode is ever in play at: neither a start nor entered by a move that
    goes on (goals and holes, entered by the move that ends the episode; CliffWalking's cliff, never)."""
    model, world = env.unwrapped.P, env.unwrapped
    in_play = np.asarray(world.initial_state_distrib) > 0
    for s in model:
        for a in model[s]:
            for probability, next_state, _, done in model[s][a]:
                if probability > 0 and not done and next_state != s:
                    in_play[next_state] = True
    return ~in_play


def text_grid(grid: Grid, values: np.ndarray, greedy: np.ndarray, over: np.ndarray) -> str:
    """V on the grid, each cell the value and its greedy arrow; where no episode is in play, the
    cell's character; walls '#'."""
    shown = [["   #   " if code in "# " else "" for code in row] for row in grid.layout]
    for s, (r, c) in enumerate(grid.cells):
        shown[r][c] = f"   {grid.layout[r][c]}   " if over[s] else f"{values[s]:6.2f}{grid.arrows[greedy[s]]}"
    return "\n".join(" ".join(row) for row in shown)


def one_hot(actions: np.ndarray, num_actions: int) -> np.ndarray:
    return np.eye(num_actions)[actions]


def play(env: gym.Env, policy: np.ndarray, seed: int) -> tuple[list[int], float]:
    """One episode acting by `policy` [S, A] on the true state: (states visited, return)."""
    rng = np.random.default_rng(seed)
    _, info = env.reset(seed=seed)
    state = env.unwrapped.s
    states, total, done = [int(state)], 0.0, False
    while not done:
        _, reward, terminated, truncated, _ = env.step(int(rng.choice(policy.shape[1], p=policy[state])))
        state = env.unwrapped.s
        states.append(int(state))
        total += reward
        done = terminated or truncated
    return states, total


def draw_grid(ax, grid: Grid) -> None:
    """The layout's cells in their colours, row 0 at the top; stars drawn as stars."""
    image = np.array([[COLOURS.get(code, (255, 255, 255)) for code in row.ljust(len(grid.layout[0]))]
                      for row in grid.layout], np.uint8)
    ax.imshow(image, interpolation="nearest")
    stars = np.array([(r, c) for r, row in enumerate(grid.layout) for c, code in enumerate(row) if code == "*"])
    if len(stars):
        ax.plot(stars[:, 1], stars[:, 0], "*", color="black", markersize=14)
    ax.set_xticks(np.arange(-0.5, image.shape[1]), minor=True)
    ax.set_yticks(np.arange(-0.5, image.shape[0]), minor=True)
    ax.grid(which="minor", color="grey", linewidth=0.8)
    ax.tick_params(which="both", length=0, labelbottom=False, labelleft=False)


def draw(path: Path, grid: Grid, values: np.ndarray, greedy: np.ndarray, over: np.ndarray,
         episodes: dict[str, tuple[list[int], float, float]], title: str) -> None:
    """Three panels: V with the greedy arrows; then each drawn episode's path (start: a circle)."""
    height, width = len(grid.layout), len(grid.layout[0])
    fig, axes = plt.subplots(1, 1 + len(episodes), figsize=(3.2 * (1 + len(episodes)) * max(1.0, width / height / 1.5),
                                                           3.6 * min(1.0, 1.5 * height / width) + 0.6))
    draw_grid(axes[0], grid)
    for s, (r, c) in enumerate(grid.cells):
        if not over[s]:
            axes[0].text(c, r, f"{values[s]:.3g}\n{grid.arrows[greedy[s]]}", ha="center", va="center", fontsize=8)
    axes[0].set_title("V and greedy actions", fontsize=9)
    for ax, (label, (states, score, expected)) in zip(axes[1:], episodes.items()):
        draw_grid(ax, grid)
        rows, columns = np.array([grid.cells[s] for s in states], float).T
        jitter = np.random.default_rng(0).uniform(-0.15, 0.15, (2, len(states)))  # revisits stay visible
        jitter[:, 0] = 0
        ax.plot(columns + jitter[1], rows + jitter[0], color=(0.16, 0.31, 0.86), linewidth=1.2, alpha=0.8)
        ax.plot(columns[0], rows[0], "o", color=(0.16, 0.31, 0.86), markersize=9)  # the start
        ax.set_title(f"{label}: return {score:g} in {len(states) - 1} moves\n(expected {expected:.2f})", fontsize=9)
    fig.suptitle(title, fontsize=10, y=0.98 if height > 2 else 1.1)
    fig.savefig(path, bbox_inches="tight", dpi=80)
    plt.close(fig)


def solve(config: TabularConfig, out: str | Path, *, progress: bool = False) -> dict:
    """Run the method, print and draw its values and policy beside a random one; the metrics."""
    env = make_env(config.env)
    grid = grid_of(env, config.env)
    if config.method == "q_learning" and not isinstance(env.observation_space, gym.spaces.Discrete):
        raise UserError(f"q_learning learns a table over observations, and {config.env}'s are "
                        f"{env.observation_space} (states that look alike); use --method value_iteration, which "
                        f"reads the true states from the model")
    run = Run.open(out, config, family="tabular", kind="comparison")
    if run.finished:
        return run.metrics
    limit = env.spec.max_episode_steps or 1_000
    num_actions = env.action_space.n
    starts = env.unwrapped.initial_state_distrib

    # ALGO LOGIC: the optimum from the model; Q-learning's table from episodes.
    optimal_values, q_star, sweeps = value_iteration(env, gamma=config.gamma)
    q_values = (q_star if config.method == "value_iteration" else
                q_learning(env, config.episodes, config.gamma, config.alpha, config.epsilon, config.seed))
    values, greedy, over = q_values.max(axis=1), q_values.argmax(axis=1), ends(env)
    optimal_here = np.isclose(q_star[np.arange(len(greedy)), greedy], optimal_values, atol=1e-6) | over

    # The greedy and a uniformly random policy: exact expected returns, and one drawn episode each.
    policies = {"random policy": np.full((len(values), num_actions), 1.0 / num_actions),
                "greedy policy" if config.method == "q_learning" else "optimal policy": one_hot(greedy, num_actions)}
    episodes = {}
    for label, policy in policies.items():
        expected = float(starts @ evaluate_policy(env, policy, limit))
        states, score = play(env, policy, config.seed)
        episodes[label] = (states, score, expected)
    title = (f"{config.env}, {config.method.replace('_', ' ')}"
             + (f" ({config.episodes:,} episodes)" if config.method == "q_learning" else "")
             + f", gamma {config.gamma:g}; expected returns over the {limit}-step limit")
    draw(run.directory / "tabular.png", grid, values, greedy, over, episodes, title)
    random_expected, greedy_expected = (episode[2] for episode in episodes.values())
    optimal_expected = (greedy_expected if config.method == "value_iteration"  # the greedy policy is q*'s
                        else float(starts @ evaluate_policy(env, one_hot(q_star.argmax(axis=1), num_actions), limit)))
    return run.finish({
        "grid": text_grid(grid, values, greedy, over), "env": config.env, "method": config.method,
        "gamma": config.gamma, "value_iteration_sweeps": sweeps,
        "values": values.tolist(), "greedy_actions": greedy.tolist(), "optimal_values": optimal_values.tolist(),
        "greedy_optimal_states": int(optimal_here.sum()), "states": len(values),
        "random_return": random_expected, "greedy_return": greedy_expected,
        "optimal_return": optimal_expected,
        "drawn_returns": {label: episode[1] for label, episode in episodes.items()},
    })


def main(argv: list[str] | None = None) -> int:
    metrics, out = run_command(argv, "tabular", __doc__.splitlines()[0], PRESETS, "star_grid", solve)
    print(metrics["grid"])
    print(f"expected return over the time limit: random policy {metrics['random_return']:.2f}, greedy policy "
          f"{metrics['greedy_return']:.2f} (optimal {metrics['optimal_return']:.2f}); greedy action optimal in "
          f"{metrics['greedy_optimal_states']} of {metrics['states']} states")
    print(f"picture: {out / 'tabular.png'}")
    return 0
