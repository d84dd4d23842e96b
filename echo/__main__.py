from echo.cli import main

raise SystemExit(main())
