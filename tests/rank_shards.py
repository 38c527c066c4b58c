"""Each rank's indices from PyTorch's DistributedSampler and timm's RepeatAugSampler (DeiT's
RASampler), unshuffled, for the cases tests/rank_shards.rs lists on the command line as
n:world:repeats triples. Prints {"n:world:repeats": [[rank 0's indices], [rank 1's], ...]}."""
import json
import sys

from torch.utils.data import DistributedSampler
from timm.data.distributed_sampler import RepeatAugSampler

out = {}
for case in sys.argv[1:]:
    n, world, repeats = (int(v) for v in case.split(":"))
    data = range(n)
    if repeats == 1:
        ranks = [DistributedSampler(data, num_replicas=world, rank=r, shuffle=False) for r in range(world)]
    else:
        # selected_round=0: ceil(n / world) per rank (DeiT's RASampler rounds to 256 images;
        # the engine keeps n an epoch, see core/src/train/shard.rs)
        ranks = [
            RepeatAugSampler(data, num_replicas=world, rank=r, shuffle=False, num_repeats=repeats, selected_round=0)
            for r in range(world)
        ]
    out[case] = [list(iter(s)) for s in ranks]
print(json.dumps(out))
