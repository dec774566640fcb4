"""`python -m dit4dit_policy.training train --config ...`: the dit4dit command as a module, so that
torchrun can start it (`python -m torch.distributed.run --nproc_per_node N -m dit4dit_policy.training train ...`)."""

import sys

from dit4dit_policy.cli import main

sys.exit(main())
