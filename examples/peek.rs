fn main() {
    let d = incubator_core::data::embedded_mnist().unwrap();
    for i in 0..2 {
        println!("label {}", d.train.labels[i]);
        let img = d.train.image(i);
        for y in 0..28 { let row: String = (0..28).map(|x| if img[y*28+x] > 128 { '#' } else { '.' }).collect(); println!("{row}"); }
    }
}
