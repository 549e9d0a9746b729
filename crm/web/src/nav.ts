// The workspace's sections. The ones not built yet keep their place in the navigation and
// say so on their page; each becomes a real page where its route is declared in App.tsx.
import type { MessageKey } from "./i18n/messages";

export interface Section {
  path: string;
  label: MessageKey;
  /** null: built; else what the section will hold, shown on its "not built yet" page. */
  comingSoon: MessageKey | null;
  /** Shown to supervisors and tenant admins only. */
  managersOnly?: boolean;
}

export const SECTIONS: readonly Section[] = [
  { path: "/contacts", label: "nav.contacts", comingSoon: null },
  { path: "/tasks", label: "nav.tasks", comingSoon: null },
  { path: "/deals", label: "nav.deals", comingSoon: null },
  { path: "/companies", label: "nav.companies", comingSoon: null },
  { path: "/scripts", label: "nav.scripts", comingSoon: null },
  { path: "/softphone", label: "nav.softphone", comingSoon: null },
  { path: "/supervisor", label: "nav.supervisor", comingSoon: null, managersOnly: true },
  { path: "/reports", label: "nav.reports", comingSoon: null, managersOnly: true },
];
