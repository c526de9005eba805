from slm_mesh.entry import main

raise SystemExit(main())
