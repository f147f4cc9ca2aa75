from streamad.app.cli import main

main()
