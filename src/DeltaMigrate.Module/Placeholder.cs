namespace DeltaMigrate.Module;

internal static class Placeholder
{
}
