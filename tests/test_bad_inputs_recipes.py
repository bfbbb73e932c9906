"""Bad-input suite, recipes (``mobclf run RECIPE.yaml``): malformed and hostile YAML, values that would fail hours
into a run, outputs outside the work folder or inside each other, work folders that cannot be written, a second
run on a locked work folder, and outputs the recipe did not make (a hand-edited corpus, a folder of the user's own
files, an artifact made by hand). Every case must be refused with exit status 2 and one line naming the recipe
file and line, and leave every user file byte-identical (``tests/bad_inputs.py``)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest
from bad_inputs import Refusal
from conftest import run

from mobclf.artifacts import lock, release
from mobclf.data.demo_corpus import generate_demo_corpus

HEAD = "name: bad\nwork: w\nsteps:\n"  # steps start on line 4
CORPUS = "  - {id: corpus, kind: demo-corpus, options: {items: 300}}\n"  # line 4


@dataclass
class Case:
    recipe: str | bytes
    line: int | None
    says: str
    files: dict[str, str] = field(default_factory=dict)  # relative path → text ("DIR" makes a folder)
    args: tuple[str, ...] = ()
    where: str = "recipe.yaml"
    setup: Callable[[Path], None] | None = None
    allowed: tuple[str, ...] = ()  # mobclf's own files the run may change


def data_step(options: str) -> str:
    """A data step on line 5 (after CORPUS), with these options."""
    return HEAD + CORPUS + f"  - {{id: dataset, kind: data, inputs: {{input: corpus}}, options: {{{options}}}}}\n"


BILLION_LAUGHS = ("name: bad\nwork: w\na: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
                  + "".join(f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 9) + "]\n"
                            for i in range(8)) + "steps: []\n")


def hand_made_after_an_interrupted_run(folder: Path) -> None:
    """A dataset made by hand from other data where the recipe's data step was interrupted (its state says
    `running`, started long ago): the old mtime rule took it as the step's output."""
    from mobclf.recipes import _fingerprint, _Loader

    generate_demo_corpus(folder / "news.jsonl", n_items=300, seed=1)
    generate_demo_corpus(folder / "other.jsonl", n_items=300, seed=2)
    assert run("data", "prepare", folder / "other.jsonl", "--out", folder / "w" / "dataset").exit_code == 0
    step = _Loader(folder / "recipe.yaml", None).load().steps[0]
    state = {"done": {}, "running": {str(step.out): {"step": "dataset", "fingerprint": _fingerprint(step),
                                                     "started": 0}}}
    (folder / "w" / ".recipe-state.json").write_text(json.dumps(state), encoding="utf-8")


def recipe_output_with_a_user_file_inside(folder: Path) -> None:
    """The recipe made the dataset; then the user put a file of their own inside it, and changed the step."""
    from mobclf.recipes import run_recipe

    recipe = folder / "recipe.yaml"
    text = recipe.read_text(encoding="utf-8")
    run_recipe(recipe)
    (folder / "w" / "dataset" / "my-notes.txt").write_text("mine\n", encoding="utf-8")
    recipe.write_text(text.replace("seed: 1", "seed: 2"), encoding="utf-8")


CASES = {
    # malformed recipes
    "empty-file": Case("", None, "a recipe is a mapping"),
    "not-a-mapping": Case("- a\n- b\n", None, "a recipe is a mapping"),
    "not-utf8": Case(b"name: \xff\xfe\n", None, "not a valid YAML recipe"),
    "tab-indented": Case(HEAD + "\t- {id: corpus, kind: demo-corpus}\n", 4, "not a valid YAML recipe"),
    "two-documents": Case(HEAD + CORPUS + "---\nname: other\n", 5, "expected a single document"),
    "python-tag": Case("name: !!python/object/apply:os.system ['touch pwned']\nwork: w\nsteps: []\n", 1,
                       "not a valid YAML recipe"),
    "steps-not-a-list": Case(HEAD.replace("steps:\n", "steps: {a: 1}\n"), 3, "`steps` must be a non-empty list"),
    "step-not-a-mapping": Case(HEAD + "  - corpus\n", 4, "a step is a mapping"),
    "unknown-recipe-key": Case(HEAD.replace("steps:", "stepz:"), 3, "unknown key 'stepz' in recipe"),
    "unknown-step-key": Case(HEAD + "  - {id: corpus, kind: demo-corpus, option: {items: 3}}\n", 4,
                             "unknown key 'option' in a step (did you mean 'options'?)"),
    "unknown-kind": Case(HEAD + "  - {id: model, kind: train}\n", 4, "unknown kind 'train'"),
    "unknown-option": Case(data_step("lable-sep: '|'"), 5, "unknown option 'lable-sep'"),
    "bad-step-id": Case(HEAD + "  - {id: ../up, kind: demo-corpus}\n", 4, "every step needs an `id`"),
    "unset-variable": Case(HEAD.replace("work: w", "work: ${MOBCLF_TEST_NO_SUCH_VARIABLE}") + CORPUS, 2,
                           "${MOBCLF_TEST_NO_SUCH_VARIABLE} is not set"),
    "missing-input-file": Case(HEAD + "  - id: dataset\n    kind: data\n    options: {train: missing.csv}\n", 6,
                               "does not exist"),
    "reads-a-later-step": Case(HEAD + "  - {id: dataset, kind: data, inputs: {input: corpus}}\n" + CORPUS, 4,
                               "'corpus' is not an earlier step's id"),
    "input-leaves-its-step": Case(CORPUS.join([HEAD, "  - {id: pre, kind: pretrain, inputs: "
                                               "{corpus: corpus/../../secret.txt}}\n"]), 5, "leaves the output"),
    "unknown-only-step": Case(HEAD + CORPUS, None, "no step 'nope'", args=("--only", "nope")),
    # YAML that would silently keep one value, recurse or hang
    "duplicate-key": Case("name: bad\nwork: w\nwork: /elsewhere\nsteps:\n" + CORPUS, 3,
                          "the key 'work' is given twice"),
    "duplicate-option": Case(HEAD + "  - {id: corpus, kind: demo-corpus, options: {items: 300, items: 30}}\n", 4,
                             "the key 'items' is given twice"),
    "billion-laughs": Case(BILLION_LAUGHS, None, "billion laughs"),
    "recursive-alias": Case(HEAD.replace("steps:\n", "steps: &s [*s]\n"), 3, "recursive alias"),
    "deep-nesting": Case("name: " + "[" * 5000 + "]" * 5000 + "\n", 1, "nested deeper"),
    # numbers that pass a range check and fail at run time
    "nan": Case(data_step("filter-std: .nan"), 5, "not a finite number"),
    "nan-as-text": Case(data_step("filter-std: nan"), 5, "expected a number, got 'nan'"),
    "inf": Case(data_step("filter-std: .inf"), 5, "not a finite number"),
    "minus-inf": Case(data_step("split: [0.8, -.inf, 0.1]"), 5, "not a finite number"),
    "1e400-as-text": Case(data_step("filter-std: 1e400"), 5, "expected a number, got '1e400'"),
    "1.0e+400": Case(data_step("filter-std: 1.0e+400"), 5, "not a finite number"),
    "nan-in-a-split": Case(data_step("split: [.nan, 0.1, 0.1]"), 5, "not a finite number"),
    "nan-loss-weight": Case(CORPUS.join([HEAD, "  - {id: dataset, kind: data, inputs: {input: corpus}}\n"
                                         "  - {id: s, kind: distill, inputs: {teacher: dataset, data: dataset}, "
                                         "options: {loss: {soft_kd: .nan}}}\n"]), 6, "not a finite number"),
    "1e29-epochs": Case(data_step("seed: 1") + "  - {id: teacher, kind: teacher, inputs: {data: dataset}, "
                                                "options: {epochs: 1e29}}\n", 6, "expected an integer, got '1e29'"),
    "huge-integer": Case(HEAD + "  - {id: corpus, kind: demo-corpus, options: {seed: 1" + "0" * 29 + "}}\n", 4,
                         "out of range"),
    "absurd-corpus-size": Case(HEAD + "  - {id: corpus, kind: demo-corpus, options: {items: 1000000000}}\n", 4,
                               "items"),
    # outputs outside `work`, hidden, or inside each other
    "out-absolute": Case(HEAD + "  - {id: corpus, kind: demo-corpus, out: /etc/passwd}\n", 4, "outside `work`"),
    "out-escapes-work": Case(HEAD + "  - id: corpus\n    kind: demo-corpus\n    out: ../victim/news.jsonl\n", 6,
                             "outside `work`", files={"victim/news.jsonl": "the user's own\n"}, args=("--force",)),
    "out-is-work": Case(HEAD + "  - {id: dataset, kind: data, options: {input: news.jsonl}, out: .}\n", 4,
                        "is `work` itself", files={"news.jsonl": "x\n"}),
    "out-through-a-symlink": Case(HEAD + CORPUS + "  - {id: dataset, kind: data, inputs: {input: corpus}}\n", 5,
                                  "outside `work`", files={"victim/keep.txt": "mine\n"},
                                  setup=lambda folder: (folder / "w").mkdir() or (folder / "w" / "dataset")
                                  .symlink_to(folder / "victim")),
    "out-hidden": Case(HEAD + "  - {id: corpus, kind: demo-corpus, out: .recipe-state.json}\n", 4, "is hidden"),
    "out-inside-another-out": Case(HEAD + CORPUS + "  - {id: dataset, kind: data, inputs: {input: corpus}}\n"
                                   "  - {id: more, kind: data, inputs: {input: corpus}, out: dataset/sub}\n", 6,
                                   "writes inside the `out` of step 'dataset'"),
    "out-around-another-out": Case(HEAD + "  - {id: corpus, kind: demo-corpus, out: corpus/news.jsonl}\n"
                                   "  - {id: dataset, kind: data, inputs: {input: corpus}, out: corpus}\n", 5,
                                   "writes around the `out` of step 'corpus'"),
    # work folders that cannot be written
    "work-below-a-file": Case(HEAD.replace("work: w", "work: afile/w") + CORPUS, 2, "cannot create `work`",
                              files={"afile": "a file, not a folder\n"}),
    "work-in-proc": Case(HEAD.replace("work: w", "work: /proc/mobclf-x") + CORPUS, 2, "cannot create `work`"),
    # outputs the recipe did not make: refused, with --force too, and left byte-identical
    "hand-edited-corpus": Case(HEAD + CORPUS, 4, "is not an output this recipe made",
                               files={"w/corpus.jsonl": '{"text": "my headline", "labels": ["sports"]}\n'}),
    "hand-edited-corpus-force": Case(HEAD + CORPUS, 4, "is not an output this recipe made", args=("--force",),
                                     files={"w/corpus.jsonl": '{"text": "my headline", "labels": ["sports"]}\n'}),
    "user-folder-at-out": Case(HEAD + "  - id: dataset\n    kind: data\n    options: {input: news.jsonl}\n", 4,
                               "is not an output this recipe made", args=("--force",),
                               files={"news.jsonl": "x\n", "w/dataset/train.jsonl": "my own rows\n",
                                      "w/dataset/notes/todo.txt": "keep\n"}),
    "user-file-at-artifact-out": Case(HEAD + "  - {id: dataset, kind: data, options: {input: news.jsonl}}\n", 4,
                                      "is not an output this recipe made", files={"news.jsonl": "x\n",
                                                                                   "w/dataset": "a file\n"}),
    "user-file-inside-the-recipes-output": Case(
        data_step("seed: 1"), 5, "so --force will not replace it", setup=recipe_output_with_a_user_file_inside,
        allowed=("w/.recipe-state.json",)),
    "hand-made-dataset-after-interruption": Case(
        HEAD + "  - {id: dataset, kind: data, options: {input: news.jsonl}}\n", 4, "is not an output this recipe made",
        args=("--force",), setup=hand_made_after_an_interrupted_run),
}


@pytest.mark.parametrize("name", list(CASES))
def test_a_bad_recipe_is_refused_in_one_line_and_touches_nothing(name, tmp_path):
    case = CASES[name]
    for path, text in case.files.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).mkdir() if text == "DIR" else (tmp_path / path).write_text(text, encoding="utf-8")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_bytes(case.recipe if isinstance(case.recipe, bytes) else case.recipe.encode("utf-8"))
    if case.setup is not None:
        case.setup(tmp_path)
    Refusal(["run", "recipe.yaml", *case.args], where=case.where, line=case.line, says=case.says,
            allowed=case.allowed).check(tmp_path)


def test_a_second_run_on_a_locked_work_folder_is_refused(tmp_path):
    """Two `mobclf run` on one work folder: the second is refused at once (another process holds the lock)."""
    (tmp_path / "recipe.yaml").write_text(HEAD + CORPUS, encoding="utf-8")
    (tmp_path / "w").mkdir()
    lock(tmp_path / "w", what="--work")  # as the first `mobclf run` does for its whole run
    try:
        Refusal(["run", "recipe.yaml"], where=str(tmp_path / "w"),
                says="another mobclf is writing it right now").check_process(tmp_path)
    finally:
        release(tmp_path / "w")
