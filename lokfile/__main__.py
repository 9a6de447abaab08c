from lokfile.cli import main

main()
