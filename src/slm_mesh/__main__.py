from slm_mesh.cli import main

raise SystemExit(main())
