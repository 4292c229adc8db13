from storepulse.cli import main

main()
