// `npm run bench`'s entry in package.json until that names bench/main.ts itself.
import { main } from "./main.ts";

await main();
