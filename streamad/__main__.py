from streamad.cli import main

main()
