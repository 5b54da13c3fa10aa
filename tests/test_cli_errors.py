"""Bad input through the binary's command line: exit code 2 and one message
naming the key or name at fault, before anything is trained; and nothing left
behind that breaks a correct run in the same workdir afterwards.

The binary's flags are parsed and its `main` run in this process (one JAX
start-up for the whole matrix); `main` is what `python -m experiments.train`
runs.
"""

import re
import sys
from unittest import mock

import pytest
from absl import flags
from absl import logging

from conftest import requires_raw_data
from experiments import train

SUPERVISED = "experiments/configs/supervised.py:dataset=adult,num_steps=4"
SSL = "experiments/configs/ssl.py:dataset=adult,num_steps=4,batch_size=8,uratio=1"
LLP = "experiments/configs/llp.py:dataset=adult,num_steps=4"
DISTILL = "experiments/configs/distill.py:dataset=adult,num_steps=4,teacher_steps=4"
SIMCLR = "experiments/configs/simclr.py:dataset=mnist,num_steps=4,batch_size=8"

CASES = [
    # Values out of range, each named with its key.
    ((f"{SUPERVISED.replace(',num_steps=4', '')},num_steps=0",), "config.num_steps"),
    ((f"{SUPERVISED},batch_size=0",), "config.batch_size"),
    ((SUPERVISED, "--config.optimizer.learning_rate=-0.1"), "config.optimizer.learning_rate"),
    ((SUPERVISED, "--config.optimizer.weight_decay=-1.0"), "config.optimizer.weight_decay"),
    ((SUPERVISED, "--config.optimizer.momentum=1.0"), "config.optimizer.momentum"),
    ((SUPERVISED, "--config.ema_decay=1.5"), "config.ema_decay"),
    ((SUPERVISED, "--config.log_every=0"), "config.log_every"),
    ((SUPERVISED, "--config.eval_batch_size=0"), "config.eval_batch_size"),
    ((f"{SUPERVISED},num_labels=0",), "config.num_labels"),
    ((f"{SUPERVISED},seed=-1",), "config.seed"),
    ((SUPERVISED, "--config.num_validation=-5"), "config.num_validation"),
    ((f"{SSL},uratio=0",), "config.uratio"),
    ((SSL, "--config.algorithm_kwargs.threshold=1.5"), "threshold must be a probability"),
    ((f"{LLP},bag_size=0",), "config.bag_size"),
    ((f"{LLP},method=llp_bp", "--config.pseudo_threshold=1.5"), "config.pseudo_threshold"),
    ((f"{LLP},method=ot", "--config.ot_epsilon=0.0"), "config.ot_epsilon"),
    ((f"{LLP},bag_size=1000000",), r"bag_size must be in \[1, "),
    ((DISTILL, "--config.teacher_steps=0"), "config.teacher_steps"),
    ((f"{DISTILL},method=kd", "--config.method_kwargs.temperature=0.0"), "temperature must be > 0"),
    # Unknown names, each with the choices.
    ((f"{SUPERVISED},dataset=nope",), "Unknown data set 'nope'"),
    ((SUPERVISED, "--config.method=nope"), "Unknown method 'nope'"),
    ((f"{SUPERVISED},model=nope",), "nope"),
    ((f"{SSL},algorithm=fixmach",), "Unknown semi-supervised algorithm 'fixmach'"),
    ((f"{LLP},bagging=nope",), "Unknown bagging 'nope'"),
    ((f"{DISTILL},method=kdd",), "kdd"),
    # Mismatches between the pieces.
    ((f"{SUPERVISED},model=small_cnn",), "small_cnn takes images; adult is tabular"),
    ((f"{SSL},init_from=/nonexistent/simclr_run",), "/nonexistent/simclr_run"),
]
RAW_DATA_CASES = [
    ((f"{SIMCLR},batch_size=1",), "batch_size >= 2"),
    ((SIMCLR, "--config.temperature=0.0"), "config.temperature"),
    ((SIMCLR.replace("dataset=mnist", "dataset=adult"), "--config.model=mlp"),
     "SimCLR draws image views"),
]


def _cli(config, *overrides, workdir):
  """What `python -m experiments.train --config=... --workdir=...` returns."""
  argv = ["train", f"--config={config}", *overrides, f"--workdir={workdir}"]
  flags.FLAGS.unparse_flags()
  with mock.patch.object(sys, "argv", argv):  # config_flags reads overrides there
    return train.main(flags.FLAGS(argv))


def _check(args, message, workdir, caplog):
  logging.set_verbosity(logging.INFO)
  with caplog.at_level("ERROR"):
    assert _cli(*args, workdir=workdir) == train.BAD_INPUT_EXIT_CODE
  errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
  assert len(errors) == 1 and re.search(message, errors[0]), errors
  assert not (workdir / "checkpoints").exists()


@pytest.mark.parametrize("args, message", CASES, ids=[m for _, m in CASES])
def test_bad_input_exits_2_naming_the_problem(args, message, tmp_path_factory, caplog):
  _check(args, message, tmp_path_factory.getbasetemp() / "shared_workdir", caplog)


@requires_raw_data
@pytest.mark.parametrize("args, message", RAW_DATA_CASES, ids=[m for _, m in RAW_DATA_CASES])
def test_bad_image_input_exits_2_naming_the_problem(args, message, tmp_path_factory, caplog):
  _check(args, message, tmp_path_factory.getbasetemp() / "shared_workdir", caplog)


def test_a_workdir_that_cannot_be_written_exits_74_naming_it(tmp_path, caplog):
  blocker = tmp_path / "a_file"
  blocker.write_text("")
  with caplog.at_level("ERROR"):
    assert _cli(SUPERVISED, workdir=blocker / "run") == train.IO_ERROR_EXIT_CODE
  errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
  assert len(errors) == 1 and str(blocker) in errors[0], errors


def test_after_the_bad_inputs_a_correct_run_in_the_same_workdir_works(tmp_path_factory):
  """Runs last in this file: every case above failed into this workdir."""
  workdir = tmp_path_factory.getbasetemp() / "shared_workdir"
  assert _cli(SUPERVISED, workdir=workdir) == 0
  assert (workdir / "results.json").exists()
