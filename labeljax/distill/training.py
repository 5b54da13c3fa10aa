"""Semi-supervised distillation as a multi-stage pipeline on the train core.

Stages, each a `trainer.fit` with its own checkpoint directory (a killed run
resumes the stage it was in):

1. teacher: supervised on the labeled examples (`config.teacher_*`), or, with
   `config.init_from`, fine-tuned from that pretrained encoder (SimCLRv2);
2. estimates: `method.fit` on the teacher's validation-set logits (weights,
   SLaM's α(x) and k(x)); weighted distillation's agreement score first
   trains its reference, a student distilled from the teacher without weights;
3. selection, for methods that choose which unlabeled points the teacher
   labels (Noisy Student's filter/balancing from the teacher's logits; active
   distillation from the logits of a student trained on the labels alone);
4. student: labeled cross-entropy mixed with the method's distillation loss on
   the (selected) unlabeled examples. `config.teacher_labels` says how the
   teacher labels them: "consistent", every step, on the same augmented view
   the student sees; or "precomputed", once per unlabeled example, on the
   clean example, which the student then sees too (active distillation's
   budget counts these queries, so it needs them). The teacher's parameters,
   or its precomputed logits (and the reference student's, the same way),
   ride in `state.algo_state`: frozen (no gradient
   reaches them, no optimizer state) and checkpointed with the student. With
   `config.noisy_student_view` the student alone sees a strongly augmented view.

Noisy Student repeats stages 2-4 for `config.num_generations`, each student
becoming the next teacher. Active distillation repeats stages 3-4 for
`config.query_rounds` rounds (query, train, re-select), splitting the budget.
"""

import os
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from labeljax import augment
from labeljax import file_lock
from labeljax import models
from labeljax import parallel
from labeljax.data.pipeline import Stream, TrainLoader
from labeljax.distill import active
from labeljax.distill import common
from labeljax.distill import get_method
from labeljax.train import evaluate as evaluate_lib
from labeljax.train import pretrained as pretrained_lib
from labeljax.train import trainer
from labeljax.train.metric_writer import MetricWriter
from labeljax.train.step import LossAux, apply_model, cross_entropy, model_inputs

TEACHER_LABELS = ("consistent", "precomputed")  # see the module docstring


def _stage_config(config, num_steps: int) -> ml_collections.ConfigDict:
  stage = ml_collections.ConfigDict(config.to_dict())
  stage.num_steps = num_steps
  stage.checkpoint_every = min(config.checkpoint_every, num_steps)
  stage.eval_every = min(config.eval_every, num_steps)
  return stage


class Frozen(NamedTuple):
  """A frozen network whose logits on the unlabeled batch the student's loss
  reads: the teacher, or weighted distillation's reference student.

  `pool_logits` are its logits on the clean pool examples, [P, C], when
  computed once ("precomputed" teaching); None to apply it every step.
  """
  model: Any
  state: trainer.TrainState
  pool_logits: np.ndarray | None = None


def distillation_setup(config, data: trainer.Data, mesh, method: common.Method,
                       teacher: Frozen, fitted, pool_indices,
                       reference: Frozen | None = None) -> trainer.Setup:
  """The student's loader and loss, labelled by the teacher in one of two ways.

  With `teacher.pool_logits` None ("consistent" teaching) the frozen teacher
  rides in `algo_state` and labels, every step, the same augmented view the
  student sees. Otherwise these are the teacher's logits on the clean
  examples `pool_indices`, computed once ("precomputed"): each step looks its
  batch's rows up, and the student sees the clean examples too (a strong view
  of them with `config.noisy_student_view`). They live in `algo_state` as
  well, replicated, so the pool must fit on every device. A `reference`
  student, for the methods that read one, is handled the same way.
  """
  train = data.dataset.train
  loader = TrainLoader(
      {"labeled": Stream(train.take(data.split.labeled), config.batch_size),
       "unlabeled": Stream(train.take(pool_indices), config.batch_size * config.uratio)},
      mesh, seed=config.seed, num_shards=config.get("num_data_shards"))
  weak, strong = augment.make_views(data.dataset.info.kind, config)
  consistent = teacher.pool_logits is None
  if method.uses_reference != (reference is not None):
    raise ValueError(f"{method.name} {'needs a' if method.uses_reference else 'takes no'} "
                     "reference student (weighted distillation's score='agreement').")
  frozen = {"teacher": teacher}
  if reference is not None:
    frozen["reference"] = reference
  algo_state = {"fitted": fitted}
  for name, net in frozen.items():
    if (net.pool_logits is None) != consistent:
      raise ValueError("The teacher and the reference student must both label each "
                       "step's view or both be precomputed.")
    if consistent:
      params = net.state.ema_params if config.eval_with_ema else net.state.params
      algo_state[name] = {"params": params, "model_state": net.state.model_state}
    elif net.pool_logits.shape[0] != len(pool_indices):
      raise ValueError(f"The {name}'s pool logits have {net.pool_logits.shape[0]} rows "
                       f"for a pool of {len(pool_indices)} examples.")
    else:
      algo_state[f"{name}_logits"] = jnp.asarray(net.pool_logits, jnp.float32)

  def frozen_logits(name, algo_state, x_u, index):
    if not consistent:
      return algo_state[f"{name}_logits"][index]
    variables = jax.lax.stop_gradient(algo_state[name])
    return apply_model(frozen[name].model, variables["params"], variables["model_state"],
                       x_u, train=False)[0].logits

  def loss_fn(model):
    def fn(params, state, batch, rng):
      aug_l, aug_u, aug_s, dropout = jax.random.split(rng, 4)
      x_l = weak(aug_l, model_inputs(batch["labeled"]["inputs"]))
      x_u = model_inputs(batch["unlabeled"]["inputs"])
      x_u = weak(aug_u, x_u) if consistent else x_u
      x_student = strong(aug_s, x_u) if config.noisy_student_view else x_u
      out, model_state = apply_model(model, params, state.model_state,
                                     jnp.concatenate([x_l, x_student]), train=True,
                                     rng=dropout)
      index = batch["unlabeled"]["index"]
      teacher_logits = frozen_logits("teacher", state.algo_state, x_u, index)
      reference_logits = (frozen_logits("reference", state.algo_state, x_u, index)
                          if reference is not None else None)
      n_l = x_l.shape[0]
      labeled_loss = cross_entropy(out.logits[:n_l], batch["labeled"]["labels"]).mean()
      distill_loss, metrics = method.loss(state.algo_state["fitted"], out.logits[n_l:],
                                          teacher_logits, reference_logits)
      loss = common.mix_with_labeled(labeled_loss, distill_loss, method.labeled_weight)
      return loss, LossAux(model_state, state.algo_state,
                           {"labeled_loss": labeled_loss, "distill_loss": distill_loss,
                            **metrics})
    return fn

  return trainer.Setup(loader, loss_fn, algo_state=algo_state)


def _reference_student(config, workdir, generation, data, mesh, student_model,
                       teacher: Frozen, logits_of) -> Frozen | None:
  """The student distilled from `teacher` without weights, frozen; None if
  preempted. Its loss is soft-label KD with the method's temperature and label
  weight, unscaled by T²: weighted distillation's loss with every weight 1.

  Weighted distillation's agreement score compares it with the teacher: such a
  student tends not to copy the teacher's mistakes (Iliopoulos et al., 2022).
  """
  kwargs = config.get("method_kwargs", {})
  kd = get_method("kd", scale_by_t2=False,
                  **{k: kwargs[k] for k in ("temperature", "labeled_weight") if k in kwargs})
  pool = data.split.unlabeled
  setup = distillation_setup(config, data, mesh, kd, teacher, None, pool)
  state = trainer.fit(config, os.path.join(workdir, f"reference_{generation}"), setup,
                      student_model, data.dataset.info, mesh)
  if state is None:
    return None
  pool_logits = None
  if teacher.pool_logits is not None:
    pool_logits = logits_of(student_model, state, data.dataset.train.take(pool))
  return Frozen(student_model, state, pool_logits)


def _query_rounds(config, workdir, data, mesh, method, student_model, teacher_model,
                  teacher_state, supervised, logits_of, test_metrics, writer,
                  results) -> str | None:
  """Active distillation in R = `config.query_rounds` rounds; the last result key.

  A student trained on the labels alone scores the pool first. Each round then
  selects b_r new points (the budget b split evenly over the rounds) from the
  not yet queried pool by the current student's logits, queries the teacher
  once on each of them, and trains a fresh student on every answer so far,
  which scores the pool for the next round: b teacher queries in all. None if
  preempted.
  """
  info = data.dataset.info
  kwargs = dict(config.get("method_kwargs", {}))
  budget, num_rounds = int(kwargs["budget"]), int(config.get("query_rounds", 1))
  if config.num_generations != 1:
    raise ValueError(f"{method.name} selects teacher queries; it has no generations "
                     f"(got num_generations={config.num_generations}).")
  if not 1 <= num_rounds <= budget:
    raise ValueError(f"query_rounds must be in [1, budget = {budget}], got {num_rounds}.")
  pool = data.split.unlabeled
  labels_only_dir = (config.get("labels_only_student_dir")
                     or os.path.join(workdir, "student_labels_only"))
  with file_lock.exclusive(labels_only_dir):
    student = trainer.fit(_stage_config(config, config.num_steps), labels_only_dir,
                          supervised, student_model, info, mesh)
  if student is None:
    return None
  results["student_labels_only_test"] = test_metrics(student_model, student)
  estimate_mistakes = (config.distill_method == "rad"
                       and kwargs.get("num_mistakes") is None)
  if estimate_mistakes:
    # RAD hedges against m = (1 − a)·N teacher mistakes on the N candidates,
    # a the teacher's accuracy on the labeled validation set.
    if not len(data.validation):
      raise ValueError("RAD estimates the teacher's mistakes on a labeled validation "
                       "set: set num_validation > 0 or set method_kwargs.num_mistakes.")
    val_logits = logits_of(teacher_model, teacher_state, data.validation)
    teacher_accuracy = float(np.mean(val_logits.argmax(1) == data.validation.labels))
  queried = np.zeros(0, np.int64)  # positions in `pool`
  answers = np.zeros((0, info.num_classes), np.float32)  # the teacher's logits on them
  round_budgets = np.diff(np.round(np.linspace(0, budget, num_rounds + 1))).astype(int)
  for round_index, round_budget in enumerate(round_budgets):
    # The method for this round's share of the budget. RAD's adversary acts on
    # the candidates, so m is counted on the not yet queried pool every round.
    remaining = np.setdiff1d(np.arange(len(pool)), queried)
    share = {"budget": int(round_budget)}
    if estimate_mistakes:
      share["num_mistakes"] = active.mistakes_from_accuracy(teacher_accuracy, len(remaining))
    round_method = get_method(config.distill_method, **{**kwargs, **share})
    pool_logits = logits_of(student_model, student, data.dataset.train.take(pool[remaining]))
    selection = round_method.select(jax.random.key(config.seed + round_index),
                                    jnp.asarray(pool_logits))
    chosen = remaining[np.asarray(selection.indices)[np.asarray(selection.valid)]]
    chosen_examples = data.dataset.train.take(pool[chosen])
    new_answers = logits_of(teacher_model, teacher_state, chosen_examples)
    answers = np.concatenate([answers, new_answers])
    queried = np.concatenate([queried, chosen])
    # The teacher's accuracy on this round's queries is for monitoring only
    # (the pool's labels are hidden from training).
    record = {"num_selected": int(len(queried)),
              "teacher_accuracy_on_queries": float(np.mean(
                  new_answers.argmax(1) == chosen_examples.labels))}
    if round_method.name == "rad":
      record["num_mistakes"] = float(share.get("num_mistakes", kwargs.get("num_mistakes")))
    name = "student_0" if num_rounds == 1 else f"student_query_{round_index}"
    writer.write(0, "selection", record, stage=name)
    in_pool_order = np.argsort(queried)
    setup = distillation_setup(config, data, mesh, round_method,
                               Frozen(teacher_model, teacher_state, answers[in_pool_order]),
                               None, pool[queried[in_pool_order]])
    student = trainer.fit(config, os.path.join(workdir, name), setup, student_model,
                          info, mesh)
    if student is None:
      return None
    results[f"{name}_test"] = test_metrics(student_model, student)
    writer.write(int(student.step), "student_test", results[f"{name}_test"], stage=name)
  return f"{name}_test"


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Teacher -> estimates -> selection -> student(s); returns both test metrics."""
  method = get_method(config.distill_method, **config.get("method_kwargs", {}))
  teacher_labels = config.get("teacher_labels", "consistent")
  common.check_choice("teacher_labels", teacher_labels, TEACHER_LABELS)
  precomputed = teacher_labels == "precomputed"
  if method.select_from == "student" and not precomputed:
    raise ValueError(f"{method.name} spends a budget of teacher queries, one per "
                     "selected point, so it needs teacher_labels='precomputed' (got "
                     f"{teacher_labels!r}).")
  # A teacher from a pretrained encoder (SimCLRv2's fine-tuned network).
  pretrained = (pretrained_lib.load(config.init_from, dataset=config.dataset)
                if config.get("init_from") else None)
  data = trainer.load_data(config)
  info = data.dataset.info
  mesh = parallel.make_mesh()
  writer = MetricWriter(workdir)
  make = lambda name, kwargs: models.get_model(name, info.num_classes, **kwargs)
  if pretrained is not None:
    pretrained_lib.warn_if_model_differs(pretrained, config.teacher_model,
                                         config.get("teacher_model_kwargs", {}))
    teacher_model = pretrained.finetune_model(info.num_classes)
  else:
    teacher_model = make(config.teacher_model, config.get("teacher_model_kwargs", {}))
  student_model = make(config.model, config.get("model_kwargs", {}))
  if method.fit is not None and not len(data.validation):
    raise ValueError(f"{method.name} estimates on a labeled validation set: "
                     "set num_validation > 0.")

  def logits_of(model, state, examples):
    predict = evaluate_lib.make_predict_fn(model)
    params = state.ema_params if config.eval_with_ema else state.params
    return evaluate_lib.predict_split(predict, params, state.model_state, examples,
                                      config.eval_batch_size, mesh)[0]

  def test_metrics(model, state):
    return trainer.evaluate(config, evaluate_lib.make_predict_fn(model), state,
                            data.dataset.test, mesh)

  # ---- 1. The teacher, supervised on the labels. Runs that agree on
  # everything it depends on may share it through `config.teacher_dir`.
  supervised = trainer.supervised_setup(config, data, mesh)
  teacher_dir = config.get("teacher_dir") or os.path.join(workdir, "teacher")
  with file_lock.exclusive(teacher_dir):
    teacher_state = trainer.fit(_stage_config(config, config.teacher_steps), teacher_dir,
                                supervised, teacher_model, info, mesh,
                                pretrained=pretrained)
  if teacher_state is None:
    return {"preempted": True}
  results = {"teacher_test": test_metrics(teacher_model, teacher_state)}
  writer.write(int(teacher_state.step), "teacher_test", results["teacher_test"],
               stage="teacher")

  pool = data.split.unlabeled
  if method.select_from == "student":
    last = _query_rounds(config, workdir, data, mesh, method, student_model, teacher_model,
                         teacher_state, supervised, logits_of, test_metrics, writer, results)
    if last is None:
      return {"preempted": True}
  else:
    generation_teacher, generation_model = teacher_state, teacher_model
    for generation in range(config.num_generations):
      teacher = Frozen(generation_model, generation_teacher)
      if precomputed:
        teacher = teacher._replace(pool_logits=logits_of(
            generation_model, generation_teacher, data.dataset.train.take(pool)))
      # ---- 2. Estimates on the validation set; weighted distillation's
      # agreement score first trains its reference, an unweighted KD student.
      fitted = reference = reference_val_logits = None
      if method.uses_reference:
        reference = _reference_student(config, workdir, generation, data, mesh,
                                       student_model, teacher, logits_of)
        if reference is None:
          return {"preempted": True}
        reference_val_logits = jnp.asarray(
            logits_of(student_model, reference.state, data.validation))
      if method.fit is not None:
        val_logits = logits_of(generation_model, generation_teacher, data.validation)
        fitted = method.fit(jnp.asarray(val_logits), jnp.asarray(data.validation.labels),
                            reference_val_logits)
      # ---- 3. Which unlabeled examples the teacher labels (Noisy Student's filter).
      chosen = np.arange(len(pool))  # positions in `pool`
      if method.select is not None:
        pool_logits = teacher.pool_logits
        if pool_logits is None:
          pool_logits = logits_of(generation_model, generation_teacher,
                                  data.dataset.train.take(pool))
        selection = method.select(jax.random.key(config.seed + generation),
                                  jnp.asarray(pool_logits))
        chosen = np.asarray(selection.indices)[np.asarray(selection.valid)]
        writer.write(0, "selection", {"num_selected": int(len(chosen))},
                     stage=f"student_{generation}")
      # ---- 4. The student.
      if precomputed:
        teacher = teacher._replace(pool_logits=teacher.pool_logits[chosen])
        if reference is not None:
          reference = reference._replace(pool_logits=reference.pool_logits[chosen])
      setup = distillation_setup(config, data, mesh, method, teacher, fitted, pool[chosen],
                                 reference)
      student = trainer.fit(config, os.path.join(workdir, f"student_{generation}"), setup,
                            student_model, info, mesh)
      if student is None:
        return {"preempted": True}
      results[f"student_{generation}_test"] = test_metrics(student_model, student)
      writer.write(int(student.step), "student_test", results[f"student_{generation}_test"],
                   stage=f"student_{generation}")
      generation_teacher, generation_model = student, student_model
    last = f"student_{config.num_generations - 1}_test"

  results["test"] = results[last]
  trainer.write_results(workdir, results)
  return results
