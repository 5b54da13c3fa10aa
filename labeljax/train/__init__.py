"""The pure, data-parallel training core shared by every algorithm family.

`trainer.fit` runs the train loop for a method's `Setup`; the pieces below are
what algorithms build their losses and steps from. This package imports no
family (`labeljax.methods.train_and_evaluate` dispatches a config).
"""

from labeljax.train.state import TrainState, create_train_state
from labeljax.train.step import (LossAux, LossFn, apply_model, make_train_step,
                                 model_inputs, supervised_loss)
