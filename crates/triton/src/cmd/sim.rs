use std::process::ExitCode;

#[derive(clap::Args)]
pub struct SimArgs {
    /// Seed that decides every choice of the run.
    #[arg(long)]
    pub seed: u64,
}

pub fn run(args: SimArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("simulator not wired yet (seed {})", args.seed)
}
