use dfdx::prelude::*;
use incubator_core::device::new_device;
use incubator_core::model::{HasParams, Init, Mode, Network, VitConfig};
use incubator_core::train::loss::soft_cross_entropy;
use incubator_core::train::optimizer::AdamW;
use rand::SeedableRng;
fn main() {
    let dev = new_device(0);
    let vit = VitConfig::preset("mnist-small", 28, 1, 4, 10).unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let mut net = Network::new(
        &mut Init {
            dev: &dev,
            rng: &mut rng,
        },
        &vit,
        &[1, 1, 1, 1],
    );
    let names = net.named_params().into_iter().map(|(n, _)| n).collect();
    let mut opt = AdamW::new(names, [0.9, 0.999], 1e-8, 0.0);
    let data = incubator_core::data::embedded_mnist().unwrap();
    let cfg = incubator_core::config::RunConfig::default();
    let maker = incubator_core::train::trainer::batch_maker(&dev, &cfg, &vit);
    let idx: Vec<usize> = (0..16).collect();
    let b = maker.eval(&data.train, &idx);
    let (x, y) = (b.patches, b.targets);
    println!(
        "labels {:?} x mean {}",
        b.labels,
        x.as_vec().iter().sum::<f32>()
    );
    for step in 0..60 {
        let logits = net.forward_traced_from(x.clone(), 0, 0.0, &mut Mode::eval());
        let loss = soft_cross_entropy(logits, y.clone());
        let v = loss.array();
        let mut g = loss.backward();
        let before = net.modules[1].blocks[0].mlp.fc1.weight.as_vec()[0];
        opt.update(&mut net, &mut g, 1e-3);
        let after = net.modules[1].blocks[0].mlp.fc1.weight.as_vec()[0];
        if step % 10 == 0 {
            println!("step {step} loss {v} w {before} -> {after}");
        }
    }
}
