from soundscape.app.cli import main

main()
