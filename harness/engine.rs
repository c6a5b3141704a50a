//! The `claimbench-engine` binary: the whole command line, linked against libtorch. Users run
//! it through the `claimbench` launcher, which makes libtorch loadable first.

fn main() {
    std::process::exit(claimbench::cli::main());
}
