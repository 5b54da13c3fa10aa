"""Self-supervised representations: SimCLR pretraining and the SimCLRv2 recipe.

* `simclr`: the NT-Xent contrastive loss over the global batch.
* `probes`: kNN and linear evaluation of a frozen embedding.
* `training`: the pretraining pipeline (`method=simclr`, which writes a
  checkpoint that other runs start from with `init_from=WORKDIR`) and SimCLRv2
  (`method=simclrv2`: pretrain -> fine-tune from the first head layer ->
  distill on the unlabeled pool).

Chen, Kornblith, Norouzi, Hinton. "A Simple Framework for Contrastive
Learning of Visual Representations", ICML 2020 (SimCLR).
Chen, Kornblith, Swersky, Norouzi, Hinton. "Big Self-Supervised Models are
Strong Semi-Supervised Learners", NeurIPS 2020 (SimCLRv2).
"""

from labeljax.selfsup.simclr import nt_xent_loss
