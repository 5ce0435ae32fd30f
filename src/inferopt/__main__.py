from inferopt.cli import main

main()
