from clairo_bench.cli import main

main()
