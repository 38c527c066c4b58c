//! Each rank's share of an epoch (`core/src/train/shard.rs`) against the samplers the reference
//! trains with: PyTorch's `DistributedSampler`, and DeiT's `RASampler` as timm keeps it.

mod common;
use common::*;
use incubator_core::train::shard::{rank_order, Ranks};

#[test]
#[ignore = "needs INCUBATOR_TORCH_PYTHON: a python with torch and timm (./scripts/test.sh sets it)"]
fn ranks_draw_the_indices_pytorchs_samplers_draw() {
    let mut cases = Vec::new();
    for n in [1, 2, 5, 7, 64, 100, 1001] {
        for world in [1, 2, 3, 4, 8] {
            for repeats in [1, 2, 3] {
                cases.push(format!("{n}:{world}:{repeats}"));
            }
        }
    }
    let args: Vec<std::ffi::OsString> = cases.iter().map(Into::into).collect();
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    let want = python_json("INCUBATOR_TORCH_PYTHON", "rank_shards.py", &args);
    for case in &cases {
        let [n, world, repeats] = <[usize; 3]>::try_from(
            case.split(':')
                .map(|v| v.parse().unwrap())
                .collect::<Vec<usize>>(),
        )
        .unwrap();
        // unshuffled on PyTorch's side: our shard of the identity order is the positions
        let order: Vec<usize> = (0..n).collect();
        for rank in 0..world {
            let got = rank_order(&order, repeats, Ranks { rank, world });
            let theirs: Vec<usize> = want[case][rank]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as usize)
                .collect();
            assert_eq!(
                got, theirs,
                "n {n}, rank {rank} of {world}, repeats {repeats}"
            );
        }
    }
}
